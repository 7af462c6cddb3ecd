//! What a Socket.IO session keeps of the request that opened it.
//!
//! engineioxide keeps each session's request head (socketioxide's `req_parts`) for the life of the
//! connection. hyper parses the URI and header values as slices of its read buffer, so a kept head
//! pins the whole buffer: 16 KB per connection, half of an idle connection's memory. Copying them
//! out before the request reaches engineioxide lets that buffer go.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};

/// Replaces the URI (and axum's copy of it) and every header value by copies that own their bytes.
/// Only a request that opens a session is kept; one that names its session (`sid`: every polling
/// request after the first, and an upgrade from polling) passes untouched.
pub async fn own_head(mut req: Request) -> Request {
    if names_a_session(req.uri()) {
        return req;
    }
    *req.uri_mut() = owned(req.uri());
    if let Some(OriginalUri(uri)) = req.extensions_mut().get_mut::<OriginalUri>() {
        *uri = owned(uri);
    }
    for value in req.headers_mut().values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    req
}

fn names_a_session(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|pair| pair.starts_with("sid=")))
}

fn owned(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::header::AUTHORIZATION;
    use bytes::Bytes;

    /// Whether `part` lies inside `buffer`'s memory.
    fn inside(buffer: &Bytes, part: &[u8]) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&part.as_ptr())
    }

    #[tokio::test]
    async fn the_head_no_longer_points_into_the_read_buffer() {
        // A request head as hyper builds it: the URI and header values are slices of one buffer.
        let buffer = Bytes::from_static(b"/socket.io/?EIO=4&transport=websocketBearer abc.def.ghivalue one");
        let uri = Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let mut auth = HeaderValue::from_maybe_shared(buffer.slice(37..55)).unwrap();
        auth.set_sensitive(true);
        let mut req = Request::builder().uri(uri.clone()).body(Body::empty()).unwrap();
        req.extensions_mut().insert(OriginalUri(uri));
        req.headers_mut().insert(AUTHORIZATION, auth);
        req.headers_mut().append("x-two", HeaderValue::from_maybe_shared(buffer.slice(55..60)).unwrap());
        req.headers_mut().append("x-two", HeaderValue::from_maybe_shared(buffer.slice(61..64)).unwrap());
        assert!(inside(&buffer, req.headers()[AUTHORIZATION].as_bytes()), "the test builds what hyper does");

        let req = own_head(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer abc.def.ghi");
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
        let two: Vec<_> = req.headers().get_all("x-two").iter().collect();
        assert_eq!(two, ["value", "one"]);
        for value in req.headers().values() {
            assert!(!inside(&buffer, value.as_bytes()), "{value:?} still points into the buffer");
        }
        let original = &req.extensions().get::<OriginalUri>().unwrap().0;
        for uri in [req.uri(), original] {
            assert_eq!(uri, "/socket.io/?EIO=4&transport=websocket");
            assert!(!inside(&buffer, uri.path().as_bytes()), "the URI still points into the buffer");
        }
    }
}
