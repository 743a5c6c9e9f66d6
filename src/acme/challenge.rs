//! HTTP-01 challenge answers: token → key authorization, held in process and, with several
//! nodes, in Redis so whichever node the CA reaches can answer. A lookup in Redis waits at most
//! the request deadline (`quota.timeout`): a slow or stalled Redis gives a 503, never a hung
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::redis_client::{RedisClient, BACKGROUND_DEADLINE};

/// How long a published token stays in Redis (an order that takes longer has failed anyway).
const TOKEN_TTL_SECS: u64 = 600;

fn redis_key(token: &str) -> String {
    format!("tg:acme:http01:{token}")
}

/// Tokens are base64url; anything else is not a token and is never looked up.
pub fn is_valid_token(token: &str) -> bool {
    crate::config::names::is_base64url_word(token, 128)
}

/// The store of pending http-01 answers.
#[derive(Default)]
pub struct Http01Store {
    local: Mutex<HashMap<String, String>>,
    redis: Option<Arc<RedisClient>>,
}

impl Http01Store {
    pub fn new(redis: Option<Arc<RedisClient>>) -> Self {
        Self {
            local: Mutex::new(HashMap::new()),
            redis,
        }
    }

    pub async fn put(&self, token: &str, key_authorization: &str) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
        if let Some(r) = &self.redis {
            let cmd = redis::cmd("SET")
                .arg(redis_key(token))
                .arg(key_authorization)
                .arg("EX")
                .arg(TOKEN_TTL_SECS)
                .clone();
            if let Err(e) = r.query::<()>(&cmd, BACKGROUND_DEADLINE).await {
                tracing::warn!(error = %e, "cannot publish http-01 token to Redis; only this node can answer it");
            }
        }
    }

    pub async fn remove(&self, token: &str) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
        if let Some(r) = &self.redis {
            let _ = r
                .query::<()>(redis::cmd("DEL").arg(redis_key(token)), BACKGROUND_DEADLINE)
                .await;
        }
    }

    /// The key authorization for a token, from this node or (multi-node) from Redis.
    pub async fn get(&self, token: &str) -> ChallengeAnswer {
        if !is_valid_token(token) {
            return ChallengeAnswer::Unknown;
        }
        if let Some(v) = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            return ChallengeAnswer::Found(v.clone());
        }
        let Some(r) = &self.redis else {
            return ChallengeAnswer::Unknown;
        };
        match r
            .query::<Option<String>>(
                redis::cmd("GET").arg(redis_key(token)),
                r.request_deadline(),
            )
            .await
        {
            Ok(Some(v)) => ChallengeAnswer::Found(v),
            Ok(None) => ChallengeAnswer::Unknown,
            Err(e) => {
                tracing::debug!(error = %e, "http-01 token lookup in Redis failed");
                ChallengeAnswer::Unavailable
            }
        }
    }
}

/// What the http-01 path answers.
#[derive(Debug, PartialEq, Eq)]
pub enum ChallengeAnswer {
    /// 200 with the key authorization.
    Found(String),
    /// 404: no such token.
    Unknown,
    /// 503: the shared store did not answer within the request deadline.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_tokens() {
        let s = Http01Store::new(None);
        s.put("abc_-1", "abc_-1.thumb").await;
        assert_eq!(
            s.get("abc_-1").await,
            ChallengeAnswer::Found("abc_-1.thumb".into())
        );
        assert_eq!(s.get("../etc").await, ChallengeAnswer::Unknown);
        s.remove("abc_-1").await;
        assert_eq!(s.get("abc_-1").await, ChallengeAnswer::Unknown);
    }
}
