//! Config errors that name the file, the line, the YAML path and what was
//! expected, and the collector that gathers all of them in one pass.

use std::fmt;

use super::env::{self, Hidden};
use super::locate::{self, YamlPath};

/// One mistake in a config file.
/// Displays as `config/x.yaml:12: routes[0].targets[1].provider: unknown provider ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    /// 1-based line, when the mistake could be placed.
    pub line: Option<usize>,
    /// YAML path such as `routes[0].targets[1].provider`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in a config file, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file, placing each on its line.
pub struct Report<'t> {
    text: &'t str,
    origin: &'t str,
    errors: Vec<ConfigError>,
    /// Paths whose further errors are echoes of one already reported.
    muted: Vec<YamlPath>,
    /// Mappings whose further errors are echoes of one already reported inside.
    muted_within: Vec<YamlPath>,
    /// Environment values no message may quote (see [`env::hide`]).
    hidden: Vec<Hidden>,
}

impl<'t> Report<'t> {
    pub fn new(text: &'t str, origin: &'t str) -> Self {
        Report {
            text,
            origin,
            errors: Vec::new(),
            muted: Vec::new(),
            muted_within: Vec::new(),
            hidden: Vec::new(),
        }
    }

    /// Records a mistake at `path`; its line is the deepest part of the path found.
    pub fn error(&mut self, path: &YamlPath, message: impl Into<String>) {
        let inside = |m: &YamlPath| path.segments().starts_with(m.segments());
        if self.muted.contains(path) || self.muted_within.iter().any(inside) {
            return;
        }
        let line = self.line_of(path);
        self.error_at(line, path.to_string(), message);
    }

    /// Records a mistake whose line is already known. Every message passes here,
    /// so this is where environment values are replaced by their references.
    pub fn error_at(&mut self, line: Option<usize>, path: String, message: impl Into<String>) {
        let origin = self.origin.to_string();
        let message = env::hide(&message.into(), &path, &self.hidden);
        self.errors.push(ConfigError {
            origin,
            line,
            path,
            message,
        });
    }

    /// Keeps these environment values out of every later message.
    pub fn hide(&mut self, hidden: Vec<Hidden>) {
        self.hidden.extend(hidden);
    }

    pub fn line_of(&self, path: &YamlPath) -> Option<usize> {
        locate::line_of(self.text, path.segments())
    }

    /// Records nothing more at `path` (its value is known to be a placeholder).
    pub fn mute(&mut self, path: &YamlPath) {
        self.muted.push(path.clone());
    }

    /// Records nothing more at `path` or inside it (a mapping with a mistyped key:
    /// its "required" errors would be echoes). The root is never muted this way.
    pub fn mute_within(&mut self, path: &YamlPath) {
        if !path.segments().is_empty() {
            self.muted_within.push(path.clone());
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The collected errors in file order (stable for the same line).
    pub fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| e.line.unwrap_or(0));
        ConfigErrors(self.errors)
    }

    /// `value` when nothing went wrong, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.has_errors() {
            Err(self.into_errors())
        } else {
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_path_message() {
        let error = ConfigError {
            origin: "config/x.yaml".into(),
            line: Some(12),
            path: "routes[0].targets[1].provider".into(),
            message: "unknown provider `opnai`".into(),
        };
        assert_eq!(
            error.to_string(),
            "config/x.yaml:12: routes[0].targets[1].provider: unknown provider `opnai`"
        );
        let bare = ConfigError {
            line: None,
            path: String::new(),
            ..error.clone()
        };
        assert_eq!(bare.to_string(), "config/x.yaml: unknown provider `opnai`");
        assert_eq!(
            ConfigErrors(vec![error, bare]).to_string().lines().count(),
            2
        );
    }

    #[test]
    fn report_sorts_by_line() {
        let text = "a: 1\nb: 2\n";
        let mut report = Report::new(text, "t.yaml");
        report.error(&YamlPath::default().key("b"), "second");
        report.error(&YamlPath::default().key("a"), "first");
        let errors = report.finish(()).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "t.yaml:1: a: first\nt.yaml:2: b: second"
        );
    }
}
