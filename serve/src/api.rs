//! HTTP errors and the JSON / header helpers every handler uses.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An HTTP error: status and the `detail` message.
#[derive(Debug, Clone)]
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl ApiError {
    pub(crate) fn bad(s: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, s.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "detail": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert("Retry-After", HeaderValue::from_static("10"));
        }
        r
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body is not JSON: {e}")))
}

pub(crate) fn x_meta(h: &HeaderMap) -> Result<Value, ApiError> {
    match h.get("x-meta") {
        None => Ok(json!({})),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad("Bad X-Meta: not ASCII"))?;
            serde_json::from_str(s).map_err(|e| ApiError::bad(format!("Bad X-Meta: {e}")))
        }
    }
}

pub(crate) fn flag(v: &Value, key: &str, default: bool) -> Result<bool, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(o) => Err(ApiError::bad(format!(
            "`{key}` must be true or false, not {o}"
        ))),
    }
}

pub(crate) fn ok_json(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

pub(crate) fn nothing_ran() -> ApiResult {
    meta_response(json!({"ran_prediction": false, "bbox": null}), Vec::new())
}

pub(crate) fn meta_response(meta: Value, body: Vec<u8>) -> ApiResult {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        "x-meta",
        HeaderValue::from_str(&meta.to_string())
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    Ok((StatusCode::OK, h, body).into_response())
}
