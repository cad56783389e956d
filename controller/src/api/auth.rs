//! Authentication and role checks, done before any handler runs.

use levee_common::identity::{Identity, Role};
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::warn;

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

/// Admits only callers whose certificate carries one of `allowed`, and
/// records the identity on the request for the handler.
#[derive(Clone, Copy)]
pub struct RoleCheck {
    service: &'static str,
    allowed: &'static [Role],
}

impl RoleCheck {
    pub const fn new(service: &'static str, allowed: &'static [Role]) -> Self {
        Self { service, allowed }
    }
}

impl Interceptor for RoleCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = peer_identity(&request).inspect_err(|status| {
            warn!(
                service = self.service,
                reason = status.message(),
                "refused an unauthenticated call"
            );
        })?;
        if !self.allowed.contains(&identity.role) {
            warn!(service = self.service, caller = %identity, "refused a call from a role that may not use this service");
            return Err(Status::permission_denied(format!(
                "{} certificates may not call the {} service",
                identity.role, self.service
            )));
        }
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}
