"""Writes N numbered lines to stdout, then a line full of terminal
control codes, a line to stderr, and a last line without a newline.
Each line is one write(), so nothing is cut in the middle.

Usage: python3 output_lines.py N"""
import os
import sys

count = int(sys.argv[1])
for n in range(count):
    os.write(1, b"line %d\n" % n)
# Clear the screen, set the window title, ring the bell, go back to the
# start of the line, erase a character, a C1 CSI (a lone byte, then as
# UTF-8) and a NUL byte:
# none may reach sockdemo's terminal as they are.
os.write(1, b"\x1b[2Jclear \x1b]0;title\x07 bell\rcr \x08bs \x9bcsi \xc2\x9bcsi \x00nul\n")
os.write(2, b"to stderr \x1b[31mred\n")
os.write(1, b"the end")
