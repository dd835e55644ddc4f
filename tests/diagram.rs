//! `--diagram FILE`: the tour and the demos written as sequence diagrams
//! for slides, by the real binary on loopback.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A folder of its own for one test, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sockdemo-diagram-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make a temp folder");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_sockdemo(args: &[&str]) -> Output {
    run(sockdemo(args), b"")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Every piece of text in an SVG document.
fn svg_texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

/// The tour's SVG is well-formed XML, stands alone (no scripts, no links,
/// no outside fonts), and shows the server, each client and their states.
#[test]
fn tour_writes_a_self_contained_svg() {
    let dir = TempDir::new("svg");
    let file = dir.file("tour.svg");
    let out = run_sockdemo(&["tour", "--diagram", path_str(&file), "--color", "never"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("tour.svg"),
        "the timeline says where the diagram is:\n{}",
        out.stdout
    );
    let svg = std::fs::read_to_string(&file).expect("the diagram was written");
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not XML ({e}):\n{svg}"));
    let root = doc.root_element();
    assert!(root.has_tag_name(("http://www.w3.org/2000/svg", "svg")));
    let width: f64 = root.attribute("width").unwrap().parse().unwrap();
    assert!(
        (1200.0..=1400.0).contains(&width),
        "projector width, got {width}"
    );
    for node in doc.descendants() {
        assert!(
            !["script", "image", "foreignObject", "style", "a", "use"]
                .contains(&node.tag_name().name()),
            "<{}> in a self-contained picture",
            node.tag_name().name()
        );
        for attr in node.attributes() {
            assert!(!attr.name().contains("href"), "a link: {attr:?}");
            assert!(
                !attr.value().contains("url("),
                "an outside resource: {attr:?}"
            );
        }
    }
    let texts = svg_texts(&doc);
    for wanted in [
        "S",
        "C1",
        "C2",
        "C3",
        "LISTEN",
        "ESTABLISHED",
        "CLOSE-WAIT",
        "TIME-WAIT",
    ] {
        assert!(
            texts.iter().any(|t| t == wanted),
            "no {wanted} in {texts:?}"
        );
    }
    for stage in ["1 LISTEN", "2 REQUEST", "3 CONFIRM", "TRANSFER", "CLOSE"] {
        assert!(texts.iter().any(|t| t == stage), "no stage {stage}");
    }
    assert!(
        texts.iter().any(|t| t == "\"hello from C2\\n\""),
        "the data's preview: {texts:?}"
    );
}

/// The tour's Mermaid text: one participant per client, the states as
/// notes, and every `:` inside a message written as Mermaid's entity.
#[test]
fn tour_writes_mermaid() {
    let dir = TempDir::new("mmd");
    let file = dir.file("tour.mmd");
    let out = run_sockdemo(&["tour", "--diagram", path_str(&file), "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let note = out
        .events()
        .into_iter()
        .find(|e| e["topic"] == "diagram")
        .expect("a diagram note");
    assert!(note["text"].as_str().unwrap().contains("tour.mmd"));
    let mmd = std::fs::read_to_string(&file).expect("the diagram was written");
    let lines: Vec<&str> = mmd.lines().filter(|l| !l.starts_with("%%")).collect();
    assert_eq!(lines[0], "sequenceDiagram", "{mmd}");
    let participants: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("participant "))
        .map(|p| p.split(" as ").next().unwrap())
        .collect();
    assert_eq!(participants, ["S", "C1", "C2", "C3"], "{mmd}");
    for wanted in [
        "Note over S: S#58; LISTEN (kernel)",
        "Note over S,C3: 2 REQUEST · a client requests a connection",
    ] {
        assert!(mmd.contains(wanted), "no {wanted:?} in\n{mmd}");
    }
    // As root the packets show it first; otherwise the kernel's table does.
    assert!(
        mmd.contains("Note over C3: C3#58; TIME-WAIT (kernel)")
            || mmd.contains("Note over C3: C3#58; TIME-WAIT (seen in packets)"),
        "no TIME-WAIT for C3 in\n{mmd}"
    );
    // Messages: `A->>B: text`, with no `;` or `#` that Mermaid would cut at.
    for line in lines
        .iter()
        .filter(|l| l.contains(">>") || l.contains("-x"))
    {
        let text = line.split_once(": ").expect("a message").1;
        assert!(!text.contains(':'), "{line}");
        for piece in text.split('#').skip(1) {
            let code = piece.split_once(';').expect("# starts an entity").0;
            assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{line}");
        }
    }
}

/// `explain TOPIC --demo --diagram` writes the demo's diagram.
#[test]
fn a_demo_writes_its_diagram() {
    let dir = TempDir::new("demo");
    let file = dir.file("handshake.svg");
    let out = run_sockdemo(&[
        "explain",
        "handshake",
        "--demo",
        "--diagram",
        path_str(&file),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let svg = std::fs::read_to_string(&file).expect("the diagram was written");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let texts = svg_texts(&doc);
    assert!(texts.iter().any(|t| t == "C1"));
    assert!(texts.iter().any(|t| t == "accept() → C1"), "{texts:?}");
}

/// A file name the diagram cannot be written as is a usage error (2),
/// found before anything runs; it says which extensions work.
#[test]
fn an_unknown_extension_is_a_usage_error() {
    let dir = TempDir::new("ext");
    let file = dir.file("tour.png");
    let out = run_sockdemo(&["tour", "--diagram", path_str(&file)]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(".svg") && out.stderr.contains(".mmd"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing ran: {}", out.stdout);
    assert!(!file.exists());
    // --diagram belongs to the demo, not to reading a lesson.
    let out = run_sockdemo(&[
        "explain",
        "handshake",
        "--diagram",
        path_str(&dir.file("x.svg")),
    ]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--demo"), "{}", out.stderr);
}

/// A place the file cannot go is an error (1) that names it, found
/// before the tour runs.
#[test]
fn an_unwritable_path_is_an_error() {
    let dir = TempDir::new("unwritable");
    let missing = dir.file("no-such-folder").join("tour.svg");
    let out = run_sockdemo(&["tour", "--diagram", path_str(&missing)]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot write the diagram") && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "the tour did not start, not even its header: {}",
        out.stdout
    );

    // A folder is refused before the run as a usage error: see below.
}

/// The names in a folder, sorted: what a run left behind.
#[cfg(unix)]
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the temp folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `tour --diagram path` is a usage error (2) that says `words`, found
/// before the tour runs.
#[cfg(unix)]
fn refused_before_the_run(path: &Path, words: &str) {
    let out = run_sockdemo(&["tour", "--diagram", path_str(path)]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains(words), "{}", out.stderr);
    assert!(
        !out.stdout.contains("socket("),
        "the tour did not run: {}",
        out.stdout
    );
}

/// On a shared machine someone can plant `/tmp/tour.svg` as a link to a
/// file of the teacher's. sockdemo refuses it before the tour runs (a
/// usage error, 2) and the file the link points to is untouched, as is
/// the place a dangling link points to.
#[cfg(unix)]
#[test]
fn a_symbolic_link_is_refused_and_its_target_untouched() {
    let dir = TempDir::new("symlink");
    let (victim, link) = (dir.file("victim.txt"), dir.file("tour.svg"));
    std::fs::write(&victim, "the teacher's file").unwrap();
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    refused_before_the_run(&link, "symbolic link");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "the teacher's file"
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    // A dangling link would make `fs::write` create the file it names.
    let (nowhere, dangling) = (dir.file("created-by-the-link"), dir.file("d.mmd"));
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    refused_before_the_run(&dangling, "symbolic link");
    assert!(!nowhere.exists(), "nothing was created through the link");
    assert_eq!(names_in(&dir.0), ["d.mmd", "tour.svg", "victim.txt"]);
}

/// A folder or a FIFO is not a file a diagram can replace: a usage error
/// (2) before the run. A FIFO would otherwise block the write until some
/// reader opened it.
#[cfg(unix)]
#[test]
fn a_folder_or_a_fifo_is_refused() {
    let dir = TempDir::new("fifo");
    let folder = dir.file("a-folder.svg");
    std::fs::create_dir(&folder).unwrap();
    refused_before_the_run(&folder, "is a folder");

    let fifo = dir.file("pipe.svg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    refused_before_the_run(&fifo, "not a regular file");
}

/// An existing diagram is replaced whole, by a rename: the name points to
/// a new file (a hard link to the old one still reads the old text, which
/// writing in place would have changed), and no temporary file is left.
#[cfg(unix)]
#[test]
fn an_existing_file_is_replaced_by_a_rename() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("replace");
    let (file, old_copy) = (dir.file("tour.svg"), dir.file("old.svg"));
    std::fs::write(&file, "last week's diagram").unwrap();
    std::fs::hard_link(&file, &old_copy).unwrap();
    let old_inode = std::fs::metadata(&file).unwrap().ino();
    let out = run_sockdemo(&["tour", "--diagram", path_str(&file), "--color", "never"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let svg = std::fs::read_to_string(&file).expect("the diagram was written");
    roxmltree::Document::parse(&svg).expect("a whole SVG");
    assert_ne!(std::fs::metadata(&file).unwrap().ino(), old_inode);
    assert_eq!(
        std::fs::read_to_string(&old_copy).unwrap(),
        "last week's diagram"
    );
    assert_eq!(names_in(&dir.0), ["old.svg", "tour.svg"], "no temp file");
}

/// `--diagram-pages`: one SVG per stage (and per 9 rows), each a whole,
/// well-formed picture no taller than a 1080-pixel slide can show at
/// nearly full size, numbered in its title, together holding every arrow
/// of the one-page diagram.
#[test]
fn pages_for_slides_are_whole_svgs_of_a_slides_height() {
    let dir = TempDir::new("pages");
    let tour = ["tour", "--clients", "2", "--pace", "0", "--packets", "off"];
    let one = dir.file("tour.svg");
    let out = run_sockdemo(&[&tour[..], &["--diagram", path_str(&one)]].concat());
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let paged = dir.file("slides.svg");
    let out = run_sockdemo(
        &[
            &tour[..],
            &["--diagram", path_str(&paged), "--diagram-pages"],
        ]
        .concat(),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let mut pages = Vec::new();
    for k in 1.. {
        let Ok(text) = std::fs::read_to_string(dir.file(&format!("slides-{k}.svg"))) else {
            break;
        };
        pages.push(text);
    }
    let n = pages.len();
    assert!(n >= 3, "one page per stage at least: {n}");
    assert!(!paged.exists(), "pages, not one file");
    let mut arrows = 0;
    for (k, page) in pages.iter().enumerate() {
        let doc =
            roxmltree::Document::parse(page).unwrap_or_else(|e| panic!("page {}: {e}", k + 1));
        let root = doc.root_element();
        let height: f64 = root.attribute("height").unwrap().parse().unwrap();
        let width: f64 = root.attribute("width").unwrap().parse().unwrap();
        assert!(
            height <= 1200.0 && width <= 1920.0,
            "page {}: {width} × {height}",
            k + 1
        );
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name("title"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(title.ends_with(&format!("({}/{n})", k + 1)), "{title}");
        arrows += doc
            .descendants()
            .filter(|n| n.has_tag_name("polygon"))
            .count();
    }
    let whole = std::fs::read_to_string(&one).unwrap();
    let whole = roxmltree::Document::parse(&whole).unwrap();
    let all = whole
        .descendants()
        .filter(|n| n.has_tag_name("polygon"))
        .count();
    assert!(all > 0);
    assert_eq!(
        arrows, all,
        "the pages hold every arrow of the whole diagram"
    );
}
