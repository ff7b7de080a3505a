//! The docs' promises about the repository itself: every relative link in README.md and
//! docs/*.md leads to a file that exists, and every `cargo xtask` command and option they
//! mention is one the command line accepts. Run by `cargo xtask test`.

use crate::build::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::util::Step;
use std::path::{Path, PathBuf};

/// README.md and every page under docs/, with their text.
fn pages(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files = vec![root.join("README.md")];
    let docs = root.join("docs");
    if let Ok(rd) = std::fs::read_dir(&docs) {
        let mut found: Vec<PathBuf> =
            rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
        found.sort();
        files.extend(found);
    }
    files.into_iter().map(|f| std::fs::read_to_string(&f).ctx("docs", &f).map(|t| (f, t)).map_err(Into::into)).collect()
}

/// Pure: the targets of the markdown links `[text](target)` in `text`, with their line.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("").to_string();
            out.push((n + 1, target));
            rest = &after[end..];
        }
    }
    out
}

/// Pure: whether a link target is a path inside the repository (not a URL, not only an
/// anchor within the same page).
fn is_relative(target: &str) -> bool {
    !(target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:"))
}

/// Pure: every `cargo xtask ...` mention: its line, the subcommand (None for options of
/// `cargo xtask` itself) and the long options written after it, up to where the command
/// ends (a closing backtick, a pipe, `;`, `&&`, a comment).
pub fn xtask_mentions(text: &str) -> Vec<(usize, Option<String>, Vec<String>)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("cargo xtask") {
            let after = &rest[i + "cargo xtask".len()..];
            let end = ["`", "|", ";", "&&", " #", ")", "\""]
                .iter()
                .filter_map(|s| after.find(s))
                .min()
                .unwrap_or(after.len());
            let words: Vec<&str> = after[..end].split_whitespace().collect();
            let sub = words
                .first()
                .filter(|w| !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .map(|w| w.to_string());
            let options = words
                .iter()
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split('=').next().unwrap_or(w).trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
                .map(str::to_string)
                .collect();
            out.push((n + 1, sub, options));
            rest = &after[end..];
        }
    }
    out
}

/// Pure: what is wrong in these pages. `exists` says whether a path is there; `cli` is the
/// command line the mentions are checked against.
pub fn problems(pages: &[(PathBuf, String)], exists: impl Fn(&Path) -> bool, cli: &clap::Command) -> Vec<String> {
    let longs = |c: &clap::Command| -> Vec<String> {
        c.get_arguments().filter_map(|a| a.get_long()).map(str::to_string).collect()
    };
    let mut found = Vec::new();
    for (file, text) in pages {
        let dir = file.parent().unwrap_or(Path::new("."));
        for (line, target) in links(text) {
            if !is_relative(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            if !exists(&dir.join(path)) {
                found.push(format!("{}:{line}: the link {target} leads nowhere", file.display()));
            }
        }
        for (line, sub, options) in xtask_mentions(text) {
            let command = match &sub {
                None => cli,
                Some(name) => match cli.find_subcommand(name) {
                    Some(c) => c,
                    None => {
                        found.push(format!("{}:{line}: `cargo xtask {name}` is no command", file.display()));
                        continue;
                    }
                },
            };
            let known = longs(command);
            for o in options {
                if !known.iter().any(|k| *k == o[2..]) {
                    let shown = sub.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
                    found.push(format!("{}:{line}: `cargo xtask{shown}` has no option {o}", file.display()));
                }
            }
        }
    }
    found
}

/// The check `cargo xtask test` runs on the repository's own pages.
pub fn check(ctx: &Ctx, cli: &clap::Command) -> Result<()> {
    let step = Step::start("docs: links in README.md and docs/, and the cargo xtask commands they name");
    let pages = pages(&ctx.root)?;
    let found = problems(&pages, |p| p.exists(), cli);
    if !found.is_empty() {
        return Err(Error::Step {
            step: "docs",
            message: format!("the docs promise what is not there; fix the page or the command:\n{}", found.join("\n")),
        });
    }
    step.done(&format!("{} pages", pages.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cli() -> Command {
        let mut c = Command::new("cargo xtask")
            .subcommand(Command::new("iso").arg(Arg::new("force").long("force").action(ArgAction::SetTrue)))
            .subcommand(Command::new("test").arg(Arg::new("vm").long("vm").action(ArgAction::SetTrue)));
        c.build();
        c
    }

    fn page(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from("/r/docs/page.md"), text.to_string())]
    }

    #[test]
    fn links_are_found_with_their_lines() {
        assert_eq!(
            links("see [a](a.md) and [b](../b.md#x)\n[web](https://x.org) [t](c.md \"title\")"),
            [(1, "a.md".into()), (1, "../b.md#x".into()), (2, "https://x.org".into()), (2, "c.md".into())]
        );
    }

    #[test]
    fn a_link_that_leads_nowhere_is_named_and_others_pass() {
        let exists = |p: &Path| p == Path::new("/r/docs/ok.md") || p == Path::new("/r/docs/../README.md");
        let text = "[ok](ok.md) [up](../README.md#top) [same](#here) [web](https://a.b/c) [gone](gone.md)";
        assert_eq!(problems(&page(text), exists, &cli()), ["/r/docs/page.md:1: the link gone.md leads nowhere"]);
    }

    #[test]
    fn xtask_commands_and_options_are_read_up_to_the_end_of_the_command() {
        assert_eq!(
            xtask_mentions("run `cargo xtask iso --force`, then `cargo xtask test --vm persistence | tee x`"),
            [(1, Some("iso".into()), vec!["--force".into()]), (1, Some("test".into()), vec!["--vm".into()])]
        );
        assert_eq!(xtask_mentions("cargo xtask --help"), [(1, None, vec!["--help".into()])]);
        assert_eq!(xtask_mentions("cargo xtask bench --runs=3."), [(1, Some("bench".into()), vec!["--runs".into()])]);
    }

    #[test]
    fn an_unknown_command_or_option_is_named() {
        let text = "`cargo xtask iso --force`\n`cargo xtask iso --forse`\n`cargo xtask tests`\n`cargo xtask --help`";
        assert_eq!(
            problems(&page(text), |_| true, &cli()),
            [
                "/r/docs/page.md:2: `cargo xtask iso` has no option --forse",
                "/r/docs/page.md:3: `cargo xtask tests` is no command",
            ]
        );
    }
}
