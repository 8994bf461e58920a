//! The per-line parsing context: a cursor over a directive's words plus
//! typed value readers that report problems as located diagnostics.
//!
//! Every reader returns `Option`: `None` means "an error was already
//! recorded", so directive parsers can keep going and collect all errors.

use std::path::Path;
use std::str::FromStr;

use crate::diag::{Diagnostic, Severity};

/// Where diagnostics for the current line go.
pub(crate) struct Ctx<'a> {
    /// The file being parsed.
    pub file: &'a Path,
    /// The current 1-based line.
    pub line: usize,
    /// The collected diagnostics of the whole parse.
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn push(&mut self, severity: Severity, word: &str, reason: &str) {
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: self.line,
            severity,
            message: format!("'{word}': {reason}"),
        });
    }

    /// Record an error about `word`.
    pub fn error(&mut self, word: &str, reason: &str) {
        self.push(Severity::Error, word, reason);
    }

    /// Record a warning about `word`.
    pub fn warn(&mut self, word: &str, reason: &str) {
        self.push(Severity::Warning, word, reason);
    }
}

/// A cursor over the words after the directive name.
pub(crate) struct Args<'w> {
    words: &'w [String],
    pos: usize,
}

impl<'w> Args<'w> {
    /// A cursor at the first word.
    pub fn new(words: &'w [String]) -> Self {
        Self { words, pos: 0 }
    }

    /// Take the next word.
    pub fn next_word(&mut self) -> Option<&'w str> {
        let w = self.words.get(self.pos)?;
        self.pos += 1;
        Some(w.as_str())
    }

    /// Whether every word has been taken.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.words.len()
    }

    /// Take the value word of option `opt`, recording an error if missing.
    pub fn value(&mut self, ctx: &mut Ctx<'_>, opt: &str) -> Option<&'w str> {
        let v = self.next_word();
        if v.is_none() {
            ctx.error(opt, "missing value");
        }
        v
    }

    /// Take an integer value of `opt` in `lo..=hi`.
    pub fn int<T>(&mut self, ctx: &mut Ctx<'_>, opt: &str, lo: T, hi: T) -> Option<T>
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let w = self.value(ctx, opt)?;
        int_in(ctx, opt, w, lo, hi)
    }

    /// Take a finite floating-point value of `opt` in `lo..=hi`.
    pub fn float(&mut self, ctx: &mut Ctx<'_>, opt: &str, lo: f64, hi: f64) -> Option<f64> {
        let w = self.value(ctx, opt)?;
        float_in(ctx, opt, w, lo, hi)
    }
}

/// Parse `w` (the value of `opt`) as an integer in `lo..=hi`.
pub(crate) fn int_in<T>(ctx: &mut Ctx<'_>, opt: &str, w: &str, lo: T, hi: T) -> Option<T>
where
    T: FromStr + PartialOrd + Copy + std::fmt::Display,
{
    match w.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Some(v),
        Ok(_) => {
            ctx.error(w, &format!("{opt} must be in {lo}..{hi}"));
            None
        }
        Err(_) => {
            ctx.error(w, &format!("{opt} needs an integer in {lo}..{hi}"));
            None
        }
    }
}

/// Parse `w` (the value of `opt`) as a finite number in `lo..=hi`.
pub(crate) fn float_in(ctx: &mut Ctx<'_>, opt: &str, w: &str, lo: f64, hi: f64) -> Option<f64> {
    // `f64::from_str` accepts "inf" and "NaN"; a configuration never means them.
    match w.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= lo && v <= hi => Some(v),
        Ok(v) if v.is_finite() => {
            ctx.error(w, &format!("{opt} must be in {lo}..{hi}"));
            None
        }
        _ => {
            ctx.error(w, &format!("{opt} needs a number"));
            None
        }
    }
}
