//! The host's log: text lines for people, or JSON lines for log collectors.
//!
//! Log values often come from plugins and clients (plugin output, error
//! messages, file names). In the text format every field, the message
//! included, goes through one escaping formatter, so no value can end a
//! line or drive the terminal: a newline is written `\n`, any other control
//! character `\u{1b}` and the like. JSON escapes by construction.

use std::{fmt, io::IsTerminal};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    EnvFilter,
    field::RecordFields,
    fmt::{FormatFields, format::Writer},
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2025-01-01T00:00:00Z  INFO conn{id=7}: ws_router_host::...: message key=value`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`,
    /// the event's fields, `span` (the innermost span's name and fields) and
    /// `spans` (every enclosing span).
    Json,
}

/// Where the log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// For subcommands whose stdout carries a document.
    Stderr,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a log subscriber is already installed")]
    AlreadySet,
}

/// Check a filter (`info`, `ws_router_host=debug,warn`, ...): the value
/// parser of the `--log-filter` setting.
pub fn parse_filter(filter: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(filter)
        .map(|_| filter.to_owned())
        .map_err(|e| e.to_string())
}

/// Install the process-wide log subscriber.
pub fn init(format: LogFormat, filter: &str, output: Output) -> Result<(), LogError> {
    let filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|source| LogError::Filter {
            filter: filter.to_owned(),
            source,
        })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (format, output) {
        (LogFormat::Text, Output::Stdout) => builder
            .fmt_fields(EscapingFields)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        (LogFormat::Text, Output::Stderr) => builder
            .fmt_fields(EscapingFields)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        (LogFormat::Json, Output::Stdout) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        (LogFormat::Json, Output::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    result.map_err(|_| LogError::AlreadySet)
}

/// The text format's field formatter: `message key=value ...` like
/// tracing-subscriber's default, with every value escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapingFields;

impl<'w> FormatFields<'w> for EscapingFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        // Fields the `log` bridge adds; the default formatter hides them too.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.writer.write_char(' ')?;
            }
            self.first = false;
            if field.name() != "message" {
                write!(self.writer, "{}=", field.name())?;
            }
            fmt::write(&mut Escape(&mut self.writer), value)
        })();
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            // Quoted, as the default formatter writes strings.
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// Writes through to `W`, escaping what could end a line or reach the
/// terminal as a command.
struct Escape<'a, W: fmt::Write>(&'a mut W);

fn needs_escape(c: char) -> bool {
    // Control characters (newline, carriage return, ESC ...), and the
    // Unicode line and paragraph separators some viewers break lines at.
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

impl<W: fmt::Write> fmt::Write for Escape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, c) in s.char_indices() {
            if needs_escape(c) {
                self.0.write_str(&s[plain..at])?;
                write!(self.0, "{}", c.escape_default())?;
                plain = at + c.len_utf8();
            }
        }
        self.0.write_str(&s[plain..])
    }
}

/// `text` as the text log writes a value: escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = fmt::Write::write_str(&mut Escape(&mut out), text);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn escape_keeps_one_line() {
        assert_eq!(escape("a\nb\r\tc\u{1b}[31m"), "a\\nb\\r\\tc\\u{1b}[31m");
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        assert_eq!(escape("x\u{2028}y"), "x\\u{2028}y");
    }

    /// Everything the text format writes for one event, through the real
    /// formatter.
    fn text_log(event: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapingFields)
            .with_ansi(false)
            .with_writer(move || buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn values_cannot_forge_lines() {
        let evil = "boom\n2099-01-01T00:00:00Z ERROR forged";
        let log = text_log(|| {
            let span = tracing::info_span!("conn", id = 7, peer = %evil);
            let _entered = span.enter();
            tracing::warn!(error = %evil, detail = evil, "plugin said: {evil}");
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("conn{id=7 peer=boom\\n2099"), "{log}");
        assert!(log.contains("plugin said: boom\\n2099"), "{log}");
        assert!(log.contains("error=boom\\n2099"), "{log}");
        assert!(log.contains("detail=\"boom\\n2099"), "{log}");
    }
}
