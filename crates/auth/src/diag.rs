//! Keys-file diagnostics, shaped like the conf crate's so an operator sees
//! one format everywhere: `file:line: error: 'word': reason`.

use std::fmt;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The line was read, but something in it was ignored or replaced.
    Warning,
    /// The line was skipped: its key is not available.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem at `file:line`, naming the offending word.
///
/// The word is never a secret: for a bad key the message names the key id
/// and describes the problem instead of echoing the key text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDiagnostic {
    /// The keys file's name, as given to the parser.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// Warning or error.
    pub severity: Severity,
    /// The word the problem is about.
    pub word: String,
    /// Why it is a problem.
    pub reason: String,
}

impl fmt::Display for KeyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: '{}': {}",
            self.file, self.line, self.severity, self.word, self.reason
        )
    }
}

/// Every diagnostic of a keys file that had errors, for strict callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileErrors(pub Vec<KeyDiagnostic>);

impl fmt::Display for KeyFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyFileErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_the_conf_crate_shape() {
        let d = KeyDiagnostic {
            file: "/etc/ntp.keys".into(),
            line: 3,
            severity: Severity::Error,
            word: "0".into(),
            reason: "key 0 is reserved".into(),
        };
        assert_eq!(
            d.to_string(),
            "/etc/ntp.keys:3: error: '0': key 0 is reserved"
        );
        let w = KeyDiagnostic {
            severity: Severity::Warning,
            line: 4,
            ..d.clone()
        };
        assert_eq!(
            KeyFileErrors(vec![d, w]).to_string(),
            "/etc/ntp.keys:3: error: '0': key 0 is reserved\n\
             /etc/ntp.keys:4: warning: '0': key 0 is reserved"
        );
    }
}
