//! HTTP-01 challenge answers: token → key authorization, held in process and, with several
//! nodes, in Redis so whichever node the CA reaches can answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::quota::RedisQuotaStore;

/// How long a published token stays in Redis (an order that takes longer has failed anyway).
const TOKEN_TTL_SECS: u64 = 600;

fn redis_key(token: &str) -> String {
    format!("tg:acme:http01:{token}")
}

/// Tokens are base64url; anything else is not a token and is never looked up.
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The store of pending http-01 answers.
#[derive(Default)]
pub struct Http01Store {
    local: Mutex<HashMap<String, String>>,
    redis: Option<Arc<RedisQuotaStore>>,
}

impl Http01Store {
    pub fn new(redis: Option<Arc<RedisQuotaStore>>) -> Self {
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
            if let Err(e) = r.query::<()>(&cmd).await {
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
            let _ = r.query::<()>(redis::cmd("DEL").arg(redis_key(token))).await;
        }
    }

    /// The key authorization for a token, from this node or (multi-node) from Redis.
    pub async fn get(&self, token: &str) -> Option<String> {
        if !is_valid_token(token) {
            return None;
        }
        if let Some(v) = self
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            return Some(v.clone());
        }
        match &self.redis {
            Some(r) => r
                .query::<Option<String>>(redis::cmd("GET").arg(redis_key(token)))
                .await
                .ok()
                .flatten(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_tokens() {
        let s = Http01Store::new(None);
        s.put("abc_-1", "abc_-1.thumb").await;
        assert_eq!(s.get("abc_-1").await.as_deref(), Some("abc_-1.thumb"));
        assert_eq!(s.get("../etc").await, None);
        s.remove("abc_-1").await;
        assert_eq!(s.get("abc_-1").await, None);
    }
}
