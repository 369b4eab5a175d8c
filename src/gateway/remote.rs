//! The remote provider: another member's gateway, reached over its exchange listener.
//!
//! (The federation lands in steps; until the global configuration is loaded, no
//! service resolves to a remote provider.)

use super::Gateway;
use super::context::ExchangeContext;
use crate::adapters::Record;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::ServiceId;

/// The provider member's gateway for one service.
#[derive(Debug, Clone)]
pub struct RemoteProvider {
    service: ServiceId,
}

impl RemoteProvider {
    /// The remote provider of `service`, when the federation knows its member.
    pub fn resolve(_gateway: &Gateway, _service: &ServiceId) -> Option<RemoteProvider> {
        None
    }

    /// Sends the request, signed and encrypted, and opens the answer.
    pub async fn call(
        &self,
        _gateway: &Gateway,
        _ctx: &mut ExchangeContext,
        _query: &[(String, String)],
        _body: &bytes::Bytes,
        _content_type: Option<&str>,
    ) -> Result<Record, GatewayError> {
        Err(GatewayError::new(
            ErrorCode::ServiceUnknown,
            format!("no gateway is known for {}", self.service),
        ))
    }
}
