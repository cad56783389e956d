//! Authentication and role checks, done before any handler runs.

use std::sync::Arc;

use levee_common::identity::{Identity, Role};
use levee_common::refusals::RefusalLog;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::refusals::{ROLE, refuse};

/// Reads the verified peer identity from the TLS session.
pub fn peer_identity<T>(request: &Request<T>) -> Result<Identity, Status> {
    let certs = request.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a client certificate signed by the cluster CA is required")
    })?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("the client certificate chain is empty"))?;
    Identity::from_certificate_der(leaf.as_ref())
        .map_err(|err| Status::unauthenticated(format!("client certificate: {err}")))
}

/// The identity a [`RoleCheck`] stored on the request.
pub fn caller<T>(request: &Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::internal("no caller identity on the request"))
}

/// Who a refusal is about: the address when the certificate says nothing
/// usable.
pub fn peer_address<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}

/// Admits only callers whose certificate carries one of `allowed`, and
/// records the identity on the request for the handler. Refusals go to
/// the refusal log: counted, and logged once per caller a minute.
#[derive(Clone)]
pub struct RoleCheck {
    service: &'static str,
    allowed: &'static [Role],
    refusals: Arc<RefusalLog>,
}

impl RoleCheck {
    pub fn new(service: &'static str, allowed: &'static [Role], refusals: Arc<RefusalLog>) -> Self {
        Self {
            service,
            allowed,
            refusals,
        }
    }
}

impl Interceptor for RoleCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = peer_identity(&request).inspect_err(|status| {
            refuse(
                &self.refusals,
                &peer_address(&request),
                ROLE,
                "unauthenticated",
                &format!("{}: {}", self.service, status.message()),
            );
        })?;
        if !self.allowed.contains(&identity.role) {
            let message = format!(
                "{} certificates may not call the {} service",
                identity.role, self.service
            );
            refuse(
                &self.refusals,
                &identity.to_string(),
                ROLE,
                "wrong_role",
                &message,
            );
            return Err(Status::permission_denied(message));
        }
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}
