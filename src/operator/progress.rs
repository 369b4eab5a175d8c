//! Progress of long journal commands: a bar on a terminal (indicatif), plain lines every
//! million records otherwise, nothing for short runs.

use std::io::IsTerminal as _;

/// Progress of one command.
#[derive(Debug)]
pub struct Progress {
    verb: &'static str,
    bar: Option<indicatif::ProgressBar>,
    last_line: i64,
}

/// Records between plain progress lines.
const LINE_EVERY: i64 = 1_000_000;

impl Progress {
    /// Progress whose lines say `verb` ("verified", "exported").
    pub fn new(verb: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{elapsed_precise}] {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress {
            verb,
            bar,
            last_line: 0,
        }
    }

    /// The command has reached record `seq` of `chain`.
    pub fn at(&mut self, chain: &str, seq: i64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(seq.max(0) as u64);
                bar.set_message(format!("{} chain {chain}: seq {seq}", self.verb));
            }
            None if seq - self.last_line >= LINE_EVERY => {
                self.last_line = seq;
                eprintln!("{} chain {chain} up to seq {seq}", self.verb);
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
