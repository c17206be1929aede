//! The repository's Markdown links, as GitHub renders them: every relative link (README.md,
//! docs/, ARCHITECTURE.md and every other `.md` in the repository) names a file or folder that
//! exists, every `#anchor` names a heading of its target, and every page of `docs/` is linked
//! from the README. A moved file or a renamed heading breaks these links silently; this test
//! makes it loud.
//!
//! Its own binary: it needs neither the AWS SDK nor moto, so it builds and runs in a moment
//! (`cargo test -p chat21 --test doc_links`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// The contract pages kept beside the repository (`../shared/`), which the README and
/// ARCHITECTURE.md link to. They are not in the repository, so these links are not checked.
const BESIDE_THE_REPOSITORY: &[&str] = &[
    "shared/API.md",
    "shared/REALTIME.md",
    "shared/ARCHITECTURE.md",
];

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ sits in the repository")
        .to_path_buf()
}

/// Every `.md` file of the repository, outside build output, dependencies and hidden folders.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// The text outside fenced code blocks, paragraph by paragraph (a code span never crosses a
/// blank line), each with the number of its first line.
fn paragraphs(markdown: &str) -> Vec<(usize, String)> {
    let mut paragraphs = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut fence: Option<String> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(open) = &fence {
            if trimmed.starts_with(open.as_str()) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            let marker: String = trimmed
                .chars()
                .take_while(|c| *c == '`' || *c == '~')
                .collect();
            fence = Some(marker);
            continue;
        }
        if trimmed.is_empty() {
            if !current.is_empty() {
                paragraphs.push((start, std::mem::take(&mut current)));
            }
            continue;
        }
        if current.is_empty() {
            start = index + 1;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.is_empty() {
        paragraphs.push((start, current));
    }
    paragraphs
}

/// The text with every code span's content removed (a span is a run of backticks up to the
/// next run of the same length), so that code never reads as a link; its line breaks stay.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut closed = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    closed = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                out.push_str("code");
                out.extend(chars[i..end].iter().filter(|c| **c == '\n'));
                i = end;
            }
            None => {
                // An unmatched run is literal backticks.
                out.extend(std::iter::repeat_n('`', run));
                i += run;
            }
        }
    }
    out
}

/// The targets of the inline links and images in `text` (`[…](target)`, `![…](target "title")`).
fn link_targets(text: &str) -> Vec<String> {
    located_link_targets(text)
        .into_iter()
        .map(|(_, target)| target)
        .collect()
}

/// [`link_targets`], each with the number of line breaks before it in `text`.
fn located_link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut rest = text;
    let mut breaks = 0;
    while let Some(at) = rest.find("](") {
        breaks += rest[..at].matches('\n').count();
        let after = &rest[at + 2..];
        let mut depth = 0;
        let mut end = after.len();
        for (index, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = index;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let target = after[..end].split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        targets.push((breaks, target.to_string()));
        breaks += after[..end].matches('\n').count();
        rest = &after[end.min(after.len())..];
    }
    targets
}

/// GitHub's anchor for a heading: the rendered text (links and code spans by their text),
/// lower-cased, punctuation dropped (letters, digits, `-` and `_` kept), spaces turned to `-`.
fn anchor_of(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` renders as its text.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings; a repeated heading gets `-1`, `-2`, … as on GitHub.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, paragraph) in paragraphs(markdown) {
        for line in paragraph.lines() {
            let level = line.chars().take_while(|c| *c == '#').count();
            if !(1..=6).contains(&level) || !line[level..].starts_with(' ') {
                continue;
            }
            let title = line[level..].trim().trim_end_matches('#').trim();
            let base = anchor_of(title);
            let count = seen.entry(base.clone()).or_insert(0);
            anchors.push(if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            });
            *count += 1;
        }
    }
    anchors
}

/// `path` with `.` and `..` resolved lexically (the link's meaning on GitHub, whatever the disk).
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every dead link of the repository's Markdown, one line each.
fn dead_links(root: &Path) -> (Vec<String>, usize) {
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    let mut dead = Vec::new();
    let mut checked = 0;
    for file in &files {
        let markdown = std::fs::read_to_string(file).unwrap();
        let relative = file.strip_prefix(root).unwrap();
        let dir = relative.parent().unwrap_or(Path::new(""));
        for (first_line, paragraph) in paragraphs(&markdown) {
            for (breaks, target) in located_link_targets(&without_code_spans(&paragraph)) {
                let at = format!("{}:{} ({target})", relative.display(), first_line + breaks);
                if target.is_empty() {
                    dead.push(format!("{at}: empty link"));
                    continue;
                }
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    relative.to_path_buf()
                } else {
                    normalized(&dir.join(path))
                };
                if resolved.starts_with("..") {
                    let beside = resolved.strip_prefix("..").unwrap();
                    if !BESIDE_THE_REPOSITORY
                        .iter()
                        .any(|page| beside == Path::new(page))
                    {
                        dead.push(format!("{at}: leaves the repository"));
                    }
                    continue;
                }
                let on_disk = root.join(&resolved);
                if !on_disk.exists() {
                    dead.push(format!("{at}: no such file {}", resolved.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if on_disk.extension().is_none_or(|ext| ext != "md") {
                    dead.push(format!("{at}: an anchor into a file that is not Markdown"));
                    continue;
                }
                let headings = anchors(&std::fs::read_to_string(&on_disk).unwrap());
                if !headings.iter().any(|heading| heading == anchor) {
                    dead.push(format!(
                        "{at}: no heading #{anchor} in {}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    (dead, checked)
}

#[test]
fn every_relative_link_and_anchor_of_the_markdown_resolves() {
    let (dead, checked) = dead_links(&repository_root());
    println!("{checked} relative links checked");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
    // The README alone links to its docs/ pages and sections: a parser that found nothing
    // would pass vacuously.
    assert!(checked > 50, "only {checked} relative links found");
}

#[test]
fn every_page_of_docs_is_linked_from_the_readme() {
    let root = repository_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let linked: Vec<PathBuf> = paragraphs(&readme)
        .into_iter()
        .flat_map(|(_, paragraph)| link_targets(&without_code_spans(&paragraph)))
        .map(|target| normalized(Path::new(target.split('#').next().unwrap_or(""))))
        .collect();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ has no pages");
    let unlinked: Vec<_> = pages.iter().filter(|page| !linked.contains(page)).collect();
    assert!(
        unlinked.is_empty(),
        "docs pages the README does not link: {unlinked:?}"
    );
}

#[test]
fn the_checker_reads_links_and_anchors_as_github_does() {
    // Anchors: code, links and punctuation dropped, repeats numbered.
    assert_eq!(
        anchor_of("What `sam delete` leaves behind"),
        "what-sam-delete-leaves-behind"
    );
    assert_eq!(anchor_of("7. Logs and alarms"), "7-logs-and-alarms");
    assert_eq!(
        anchor_of("Errors: the envelope — and codes"),
        "errors-the-envelope--and-codes"
    );
    assert_eq!(
        anchor_of("`WEBHOOK_EVENTS` and [tenants](x.md)"),
        "webhook_events-and-tenants"
    );
    assert_eq!(
        anchors("# A\n\n## B\n\n```\n# not a heading\n```\n\n## B\n#nospace\n"),
        ["a", "b", "b-1"]
    );
    // Links: inline and images, titles dropped; code spans, even across lines, are not links.
    let text = without_code_spans(
        "see [x](a.md#b) and ![y](docs/c.png \"t\"), `[z](no.md)`, ``[w](`no`)``\n",
    );
    assert_eq!(link_targets(&text), ["a.md#b", "docs/c.png"]);
    let spanning = without_code_spans("a `code\nspan` [x](x.md)\n[y\nz](y.md)");
    assert_eq!(
        located_link_targets(&spanning),
        [(1, "x.md".to_string()), (3, "y.md".to_string())]
    );
    let fenced =
        "before [a](a.md)\n\n```sh\n[b](b.md)\n```\n\n  ```\n  [c](c.md)\n  ```\nafter [d](d.md)\n";
    let found: Vec<_> = paragraphs(fenced)
        .into_iter()
        .flat_map(|(_, p)| link_targets(&without_code_spans(&p)))
        .collect();
    assert_eq!(found, ["a.md", "d.md"]);
    assert_eq!(
        normalized(Path::new("docs/../README.md")),
        Path::new("README.md")
    );
    assert_eq!(
        normalized(Path::new("../shared/API.md")),
        Path::new("../shared/API.md")
    );
}
