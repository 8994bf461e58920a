//! Splits configuration text into lines of words.
//!
//! Rules, as in ntpd's scanner: `#` starts a comment that runs to the end of
//! the line; words are separated by whitespace; a double-quoted word may
//! contain spaces and `#` (used for file names).

/// The words of one non-empty line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexLine {
    /// 1-based line number.
    pub number: usize,
    /// The words, quotes removed.
    pub words: Vec<String>,
}

/// A line the lexer could not split (an unterminated quote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    /// 1-based line number.
    pub number: usize,
    /// The unterminated word, as written.
    pub word: String,
}

/// Split `text` into non-empty lines of words.
pub(crate) fn lex(text: &str) -> Vec<Result<LexLine, LexError>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let number = i + 1;
            match split_line(line) {
                Ok(words) if words.is_empty() => None,
                Ok(words) => Some(Ok(LexLine { number, words })),
                Err(word) => Some(Err(LexError { number, word })),
            }
        })
        .collect()
}

/// Split one line; `Err` carries an unterminated quoted word.
fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(words),
            Some('"') => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("\"{word}")),
                    }
                }
                words.push(word);
            }
            Some(_) => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    // A '#' inside a word also starts a comment, so that
                    // `server a.b#comment` behaves like ntpd.
                    if c.is_whitespace() || c == '#' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                words.push(word);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_quotes() {
        let out = lex("# header\n\n  server a  iburst # trailing\nlogfile \"/x y/#z\"\nb#c d\n");
        assert_eq!(
            out,
            vec![
                Ok(LexLine {
                    number: 3,
                    words: vec!["server".into(), "a".into(), "iburst".into()]
                }),
                Ok(LexLine {
                    number: 4,
                    words: vec!["logfile".into(), "/x y/#z".into()]
                }),
                Ok(LexLine {
                    number: 5,
                    words: vec!["b".into()]
                }),
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let out = lex("logfile \"/var/log");
        assert_eq!(
            out,
            vec![Err(LexError {
                number: 1,
                word: "\"/var/log".into()
            })]
        );
    }
}
