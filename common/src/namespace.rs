//! Who may raise which event types.
//!
//! Three namespaces are reserved: `host.` (what an agent observes on its
//! own host, plus the controllers' `host.lost` and `host.recovered`),
//! `levee.` and `timer.` (the controllers' own). A rule trusts an event of
//! these types to mean what it says, so a sender outside its namespace
//! could make rules act when nothing happened. Types are compared after
//! folding case and dropping whitespace and invisible characters, so
//! ` Timer.Fired` or `timer\u{200b}.fired` is refused like `timer.fired`.

use thiserror::Error;

/// Type prefixes of events raised inside the fleet.
pub const RESERVED_PREFIXES: [&str; 3] = ["host.", "levee.", "timer."];

/// `host.` types only the controllers raise: facts about an agent that
/// the agent itself cannot know or must not claim.
pub const CONTROLLER_HOST_TYPES: [&str; 2] = ["host.lost", "host.recovered"];

/// Who is raising an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raiser {
    /// The controllers' own code (timers, lost hosts, rule silence...).
    Controllers,
    /// An agent, about its own host, over its certificate's session.
    Agent,
    /// A workload on a host, through the agent's emit socket.
    Workload,
    /// A webhook or MQTT message from outside the fleet.
    Outside,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("type `{event_type}` is reserved: {reason}")]
pub struct ReservedType {
    pub event_type: String,
    pub reason: &'static str,
}

/// The type as the reserved-namespace check compares it: ASCII lower
/// case, without whitespace, control or zero-width and direction
/// characters. Only fixed lists are used, never the toolchain's Unicode
/// tables, so controllers built by different compilers decide alike.
pub fn normalise_type(event_type: &str) -> String {
    event_type
        .chars()
        .filter(|c| !(is_space(*c) || c.is_ascii_control() || is_c1(*c) || is_invisible(*c)))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Unicode's White_Space characters.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{0085}'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

fn is_c1(c: char) -> bool {
    matches!(c, '\u{0080}'..='\u{009F}')
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The reserved prefix `event_type` falls under, if any.
pub fn reserved_prefix(event_type: &str) -> Option<&'static str> {
    let normal = normalise_type(event_type);
    RESERVED_PREFIXES
        .into_iter()
        .find(|prefix| normal.starts_with(prefix))
}

/// Whether `raiser` may raise an event of `event_type`.
pub fn check(raiser: Raiser, event_type: &str) -> Result<(), ReservedType> {
    let refuse = |reason| {
        Err(ReservedType {
            event_type: event_type.to_owned(),
            reason,
        })
    };
    let Some(prefix) = reserved_prefix(event_type) else {
        return Ok(());
    };
    match raiser {
        Raiser::Controllers => Ok(()),
        Raiser::Agent if prefix == "host." => {
            let normal = normalise_type(event_type);
            if CONTROLLER_HOST_TYPES
                .iter()
                .any(|owned| normal.starts_with(owned))
            {
                refuse("only the controllers decide that a host was lost or recovered")
            } else if normal != event_type {
                refuse("a host event's type must be written in lower case without spaces")
            } else {
                Ok(())
            }
        }
        Raiser::Agent => refuse("`levee.` and `timer.` events are raised by the controllers only"),
        Raiser::Workload => {
            refuse("`host.`, `levee.` and `timer.` events are raised by Levee itself")
        }
        Raiser::Outside => {
            refuse("events from outside the fleet may not use `host.`, `levee.` or `timer.` types")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguised_reserved_types_are_still_reserved() {
        for disguised in [
            "timer.fired",
            " Timer.Fired ",
            "TIMER.fired",
            "timer\u{200b}.fired",
            "ti mer.fired",
            "\u{202e}levee.rule.silent",
            "levee.\tanything",
            "HOST.LOST",
        ] {
            assert!(
                reserved_prefix(disguised).is_some(),
                "{disguised:?} slipped through"
            );
            assert!(check(Raiser::Outside, disguised).is_err(), "{disguised:?}");
            assert!(check(Raiser::Workload, disguised).is_err(), "{disguised:?}");
            assert!(check(Raiser::Controllers, disguised).is_ok());
        }
        for fine in ["app.load", "hostname.changed", "timers", "alert.firing"] {
            assert_eq!(reserved_prefix(fine), None, "{fine:?}");
            assert!(check(Raiser::Outside, fine).is_ok());
        }
    }

    #[test]
    fn agents_raise_host_events_about_themselves_only() {
        assert!(check(Raiser::Agent, "host.process.exited").is_ok());
        assert!(check(Raiser::Agent, "host.check.failed").is_ok());
        for forged in [
            "host.lost",
            "host.lost.x",
            "host.lostx",
            "host.recovered.now",
            "Host.Lost",
            "host.recovered",
            "host. lost",
            "Host.process.exited",
            "timer.fired",
            "levee.service.unplaced",
        ] {
            let err = check(Raiser::Agent, forged).unwrap_err();
            assert!(err.to_string().contains("reserved"), "{err}");
        }
    }
}
