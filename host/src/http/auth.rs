//! Who may use the HTTP surface: client tokens (JWT) on the WebSocket
//! upgrade, browser origins, and publisher keys on the publish API and the
//! operator views. Everything is open unless configured (see
//! `docs/security.md`).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    Json,
    extract::Query,
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    config::Config,
    hub::{
        publish::{DataCheck, Sampler},
        session::{Authenticator, Identity, Unauthenticated},
    },
};

/// The cookie the earlier design's front end sends its token in.
const TOKEN_COOKIE: &str = "access_token";

/// Why the host will not start with these settings.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(
        "refusing to listen on {0} without a publish key: anyone who reaches it could publish. \
         Give --publish-key KEY (WS_ROUTER_PUBLISH_KEYS), listen on a loopback address, \
         or pass --insecure-publish to run without one"
    )]
    InsecurePublish(SocketAddr),
    #[error("cannot read --jwt-public-key {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--jwt-public-key {}: not a PEM RSA or P-256 (EC) public key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("--jwt-secret is empty")]
    EmptySecret,
    #[error("a publish key is empty")]
    EmptyPublishKey,
}

/// The access settings, ready to check requests against.
pub struct Security {
    jwt: Option<Arc<Verifier>>,
    origins: Origins,
    /// SHA-256 of each publish key, and whether it is trusted.
    publish_keys: Vec<([u8; 32], bool)>,
    /// Picks the trusted publishers' updates that are checked.
    sampler: Sampler,
}

/// A client the upgrade admitted: who it is, and who checks its fresh
/// tokens; `None` when authentication is off.
pub type Admitted = Option<(Identity, Arc<dyn Authenticator>)>;

/// Who the publish API is talking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// No key is configured, or the key is an ordinary one.
    Ordinary,
    /// A `--trusted-publish-key`.
    Trusted,
}

enum Origins {
    Any,
    Listed(Vec<String>),
}

impl Security {
    /// The settings of `config`: reads the public key file, and refuses an
    /// open publish API on a non-loopback address.
    pub fn new(config: &Config) -> Result<Security, SecurityError> {
        let access = &config.access;
        if !access.publish_keys_set()
            && !access.insecure_publish
            && !config.listen.ip().is_loopback()
        {
            return Err(SecurityError::InsecurePublish(config.listen));
        }
        let mut publish_keys = Vec::new();
        for (keys, trusted) in [
            (&access.publish_key, false),
            (&access.trusted_publish_key, true),
        ] {
            for key in keys {
                if key.is_empty() {
                    return Err(SecurityError::EmptyPublishKey);
                }
                publish_keys.push((digest(key), trusted));
            }
        }
        let origins = if access.allowed_origins.iter().any(|o| o.trim() == "*") {
            Origins::Any
        } else {
            Origins::Listed(
                access
                    .allowed_origins
                    .iter()
                    .map(|o| normalize_origin(o))
                    .filter(|o| !o.is_empty())
                    .collect(),
            )
        };
        Ok(Security {
            jwt: Verifier::new(config)?.map(Arc::new),
            origins,
            publish_keys,
            sampler: Sampler::new(access.trusted_validation_sample),
        })
    }

    /// Whether clients must present a token.
    pub fn authenticates(&self) -> bool {
        self.jwt.is_some()
    }

    /// The WebSocket upgrade's checks: the browser origin (403), then the
    /// token (401). `Ok(None)` when authentication is off.
    #[allow(clippy::result_large_err)] // The refusal is the response.
    pub fn admit_client(&self, headers: &HeaderMap, uri: &Uri) -> Result<Admitted, Response> {
        self.check_origin(headers)?;
        let Some(jwt) = &self.jwt else {
            return Ok(None);
        };
        let Some(token) = client_token(headers, uri) else {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                "missing token: send it in the access_token cookie, an Authorization: Bearer \
                 header or the token query parameter",
            ));
        };
        match jwt.verify(&token) {
            Ok(identity) => Ok(Some((identity, Arc::clone(jwt) as Arc<dyn Authenticator>))),
            Err(e) => Err(refusal(
                StatusCode::UNAUTHORIZED,
                &format!("invalid token: {e}"),
            )),
        }
    }

    /// A browser may open a WebSocket from the host's own origin or a
    /// listed one; a client that sends no `Origin` is not a browser page.
    #[allow(clippy::result_large_err)]
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let own = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .zip(origin.split_once("://").map(|(_, authority)| authority))
            .is_some_and(|(host, authority)| {
                authority.trim_end_matches('/').eq_ignore_ascii_case(host)
            });
        let listed = match &self.origins {
            Origins::Any => true,
            Origins::Listed(allowed) => allowed.contains(&normalize_origin(origin)),
        };
        if own || listed {
            Ok(())
        } else {
            Err(refusal(
                StatusCode::FORBIDDEN,
                &format!(
                    "origin {:?} may not open a WebSocket here: it is not the host's own, nor \
                     listed in --allowed-origins",
                    crate::plugin::schema::truncate(origin, 200)
                ),
            ))
        }
    }

    /// Whether the request carries a publish key (when keys are
    /// configured): the publisher, or the 401 to answer.
    #[allow(clippy::result_large_err)]
    pub fn admit_publisher(&self, headers: &HeaderMap) -> Result<Publisher, Response> {
        if self.publish_keys.is_empty() {
            return Ok(Publisher::Ordinary);
        }
        let refused = |why: &str| {
            let mut response = refusal(StatusCode::UNAUTHORIZED, why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        };
        let Some(key) = bearer(headers) else {
            return Err(refused(
                "missing publish key: send Authorization: Bearer <key> (see --publish-key)",
            ));
        };
        // Digests have one length whatever the key's, and every configured
        // key is compared in full: the time taken says nothing of how close
        // a guess was.
        let sent = digest(key);
        let (mut matched, mut trusted) = (subtle::Choice::from(0), subtle::Choice::from(0));
        for (known, is_trusted) in &self.publish_keys {
            let equal = known.ct_eq(&sent);
            matched |= equal;
            trusted |= equal & subtle::Choice::from(u8::from(*is_trusted));
        }
        match (bool::from(matched), bool::from(trusted)) {
            (false, _) => Err(refused("wrong publish key")),
            (true, true) => Ok(Publisher::Trusted),
            (true, false) => Ok(Publisher::Ordinary),
        }
    }

    /// How this publisher's data is checked.
    pub fn data_check(&self, publisher: Publisher) -> DataCheck<'_> {
        match publisher {
            Publisher::Trusted => DataCheck::Sampled(&self.sampler),
            Publisher::Ordinary => DataCheck::Every,
        }
    }
}

/// `{"status":"error","message":...}` with `status`.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "status": "error", "message": message });
    (status, Json(body)).into_response()
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `https://App.example.com/` and `https://app.example.com` are one origin.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The `Authorization: Bearer` value.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The client's token: the `access_token` cookie, else the bearer header,
/// else the `token` query parameter.
fn client_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned());
    cookie
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(headers).map(str::to_owned))
        .or_else(|| {
            #[derive(serde::Deserialize)]
            struct TokenQuery {
                token: String,
            }
            Query::<TokenQuery>::try_from_uri(uri)
                .ok()
                .map(|q| q.0.token)
                .filter(|t| !t.is_empty())
        })
}

/// Checks client tokens: the signature with the configured key of the
/// token's algorithm, then `exp`, `nbf` and the configured `iss` and `aud`.
pub struct Verifier {
    keys: Vec<(DecodingKey, Validation)>,
}

impl Verifier {
    /// `None` when no key is configured (authentication off).
    fn new(config: &Config) -> Result<Option<Verifier>, SecurityError> {
        let access = &config.access;
        let mut keys = Vec::new();
        if let Some(secret) = &access.jwt_secret {
            if secret.is_empty() {
                return Err(SecurityError::EmptySecret);
            }
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ));
        }
        if let Some(path) = &access.jwt_public_key {
            let pem = std::fs::read(path).map_err(|source| SecurityError::KeyFile {
                path: path.clone(),
                source,
            })?;
            let key = match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (key, Algorithm::RS256),
                Err(rsa) => match DecodingKey::from_ec_pem(&pem) {
                    Ok(key) => (key, Algorithm::ES256),
                    Err(ec) => {
                        return Err(SecurityError::BadKey {
                            path: path.clone(),
                            reason: format!("as RSA: {rsa}; as EC: {ec}"),
                        });
                    }
                },
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let keys = keys
            .into_iter()
            .map(|(key, algorithm)| {
                let mut validation = Validation::new(algorithm);
                // Expiry is exact: the connection is closed at `exp` too.
                validation.leeway = 0;
                validation.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = &access.jwt_issuer {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                match &access.jwt_audience {
                    Some(audience) => {
                        validation.set_audience(&[audience]);
                        required.push("aud");
                    }
                    None => validation.validate_aud = false,
                }
                validation.set_required_spec_claims(&required);
                (key, validation)
            })
            .collect();
        Ok(Some(Verifier { keys }))
    }
}

impl Authenticator for Verifier {
    fn verify(&self, token: &str) -> Result<Identity, Unauthenticated> {
        let fail = |why: String| Unauthenticated(why);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| fail(format!("malformed token: {e}")))?;
        let Some((key, validation)) = self
            .keys
            .iter()
            .find(|(_, v)| v.algorithms.contains(&header.alg))
        else {
            let accepted: Vec<String> = self
                .keys
                .iter()
                .flat_map(|(_, v)| v.algorithms.iter().map(|a| format!("{a:?}")))
                .collect();
            return Err(fail(format!(
                "token algorithm {:?} is not accepted here (accepted: {})",
                header.alg,
                accepted.join(", ")
            )));
        };
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| {
                fail(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    ErrorKind::InvalidSignature => "bad signature".into(),
                    ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
                    ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
                    ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
                    ErrorKind::MissingRequiredClaim(claim) => format!("no {claim} claim"),
                    ErrorKind::InvalidClaimFormat(claim) => format!("malformed {claim} claim"),
                    _ => format!("malformed token: {e}"),
                })
            })?
            .claims;
        let routes = match claims.get("routes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| fail("the routes claim must be a list of route names".into()))?,
            ),
            Some(_) => {
                return Err(fail(
                    "the routes claim must be a list of route names".into(),
                ));
            }
        };
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
        Ok(Identity {
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            claims: Arc::from(Value::Object(claims).to_string()),
            routes,
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_taken_cookie_first_then_header_then_query() {
        let uri: Uri = "/api/v1/ws?token=q".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(client_token(&headers, &uri).as_deref(), Some("q"));
        headers.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(client_token(&headers, &uri).as_deref(), Some("h"));
        headers.insert(header::COOKIE, "a=1; access_token=c; b=2".parse().unwrap());
        assert_eq!(client_token(&headers, &uri).as_deref(), Some("c"));
        assert_eq!(
            client_token(&HeaderMap::new(), &"/x".parse().unwrap()),
            None
        );
    }

    fn origin(security: &Security, host: &str, origin: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        security.check_origin(&headers).is_ok()
    }

    #[test]
    fn origins_are_the_hosts_own_or_listed() {
        let mut config = Config::defaults();
        config.access.allowed_origins = vec!["https://App.example.com/".into()];
        let security = Security::new(&config).unwrap();
        assert!(origin(&security, "127.0.0.1:8000", None));
        assert!(origin(
            &security,
            "127.0.0.1:8000",
            Some("http://127.0.0.1:8000")
        ));
        assert!(origin(
            &security,
            "Example.com",
            Some("https://example.com")
        ));
        assert!(origin(
            &security,
            "127.0.0.1:8000",
            Some("https://app.example.com")
        ));
        assert!(!origin(
            &security,
            "127.0.0.1:8000",
            Some("http://127.0.0.1:8001")
        ));
        assert!(!origin(&security, "127.0.0.1:8000", Some("null")));
        assert!(!origin(
            &security,
            "127.0.0.1:8000",
            Some("https://evil.example.com")
        ));
    }

    #[test]
    fn an_open_publish_api_off_loopback_is_refused() {
        let mut config = Config::defaults();
        config.listen = "0.0.0.0:8000".parse().unwrap();
        assert!(matches!(
            Security::new(&config),
            Err(SecurityError::InsecurePublish(_))
        ));
        config.access.insecure_publish = true;
        assert!(Security::new(&config).is_ok());
        config.access.insecure_publish = false;
        config.access.trusted_publish_key = vec!["k".into()];
        assert!(Security::new(&config).is_ok());
    }
}
