//! Which user a workload runs as. Only root can run a workload as someone
//! else; an agent that is not root refuses a different user up front
//! rather than letting the spawn fail with a bare "operation not permitted".

use nix::unistd::{Uid, User};
use thiserror::Error;

/// The account a workload runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} on this host")]
    Unknown(String),
    #[error("cannot look up user {user:?}: {reason}")]
    Lookup { user: String, reason: String },
    #[error(
        "cannot run as user {user:?} (uid {uid}): the agent runs as uid {agent_uid}, not root; run the agent as root or drop `user`"
    )]
    NotPermitted {
        user: String,
        uid: u32,
        agent_uid: u32,
    },
}

/// Looks up `user`, a name or a numeric uid.
pub fn lookup(user: &str) -> Result<RunAs, UserError> {
    let lookup_error = |err: nix::Error| UserError::Lookup {
        user: user.to_owned(),
        reason: err.to_string(),
    };
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(lookup_error)?,
        Err(_) => User::from_name(user).map_err(lookup_error)?,
    };
    let found = found.ok_or_else(|| UserError::Unknown(user.to_owned()))?;
    Ok(RunAs {
        name: found.name,
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        home: found.dir.display().to_string(),
    })
}

/// What to switch to for `user`, given the agent's effective uid: `None`
/// when the workload runs as the agent's own user (then it keeps the
/// agent's groups too).
pub fn switch_to(user: Option<&str>, agent_uid: u32) -> Result<Option<RunAs>, UserError> {
    let Some(user) = user else {
        return Ok(None);
    };
    let target = lookup(user)?;
    if target.uid == agent_uid {
        return Ok(None);
    }
    if agent_uid != 0 {
        return Err(UserError::NotPermitted {
            user: user.to_owned(),
            uid: target.uid,
            agent_uid,
        });
    }
    Ok(Some(target))
}

/// The agent's effective uid.
pub fn agent_uid() -> u32 {
    Uid::effective().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name_or_uid() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("0").unwrap().name, "root");
        assert_eq!(
            lookup("levee-no-such-user"),
            Err(UserError::Unknown("levee-no-such-user".into()))
        );
    }

    #[test]
    fn only_root_may_switch_users() {
        assert_eq!(switch_to(None, 1000), Ok(None));
        // A non-root agent asked to run a workload as root.
        let err = switch_to(Some("root"), 1000).unwrap_err();
        assert!(matches!(
            err,
            UserError::NotPermitted {
                uid: 0,
                agent_uid: 1000,
                ..
            }
        ));
        assert!(err.to_string().contains("not root"), "{err}");
        // Root may become anyone.
        let nobody = lookup("nobody").expect("the test host has a `nobody` user");
        assert_eq!(switch_to(Some("nobody"), 0), Ok(Some(nobody)));
    }
}
