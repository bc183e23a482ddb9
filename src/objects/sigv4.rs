//! SigV4 for S3 through `aws-sigv4`, with S3's canonicalization: the path is signed exactly as
//! sent (encoded once, never normalized) and the payload is `UNSIGNED-PAYLOAD` for the GET and
//! HEAD requests postern streams.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the S3 request: {0}")]
pub struct SignError(String);

/// One request to sign. `path_and_query` is already encoded (see [`super::key::encode_key`]).
pub struct SignInput<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub method: &'a str,
    pub authority: &'a str,
    pub path_and_query: &'a str,
    /// Headers to sign besides `host` (tests reproduce AWS's published examples with these).
    pub extra_headers: &'a [(&'a str, &'a str)],
    /// `None`: `UNSIGNED-PAYLOAD`.
    pub payload: Option<&'a [u8]>,
    pub time: SystemTime,
}

fn settings(location: SignatureLocation, expires_in: Option<Duration>) -> SigningSettings {
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Single;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    s.signature_location = location;
    s.expires_in = expires_in;
    s.payload_checksum_kind = match location {
        SignatureLocation::Headers => PayloadChecksumKind::XAmzSha256,
        _ => PayloadChecksumKind::NoHeader,
    };
    s
}

fn run(
    input: &SignInput,
    location: SignatureLocation,
    expires_in: Option<Duration>,
) -> Result<aws_sigv4::http_request::SigningInstructions, SignError> {
    let identity: Identity = input.credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region)
        .name("s3")
        .time(input.time)
        .settings(settings(location, expires_in))
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let headers =
        std::iter::once(("host", input.authority)).chain(input.extra_headers.iter().copied());
    let body = match input.payload {
        Some(bytes) => SignableBody::Bytes(bytes),
        None => SignableBody::UnsignedPayload,
    };
    let uri = format!("https://{}{}", input.authority, input.path_and_query);
    let request = SignableRequest::new(input.method, uri, headers, body)
        .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    Ok(instructions)
}

/// The headers that authenticate the request (`authorization`, `x-amz-date`,
/// `x-amz-content-sha256`, and `x-amz-security-token` for temporary credentials).
pub fn sign_headers(input: &SignInput) -> Result<Vec<(&'static str, String)>, SignError> {
    let (headers, _) = run(input, SignatureLocation::Headers, None)?.into_parts();
    Ok(headers
        .into_iter()
        .map(|header| (header.name(), header.value().to_string()))
        .collect())
}

/// The query string (`X-Amz-Algorithm=…&X-Amz-Signature=…`) of a presigned URL.
pub fn presign_query(input: &SignInput, expires_in: Duration) -> Result<String, SignError> {
    let instructions = run(input, SignatureLocation::QueryParams, Some(expires_in))?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in instructions.params() {
        query.append_pair(name, value);
    }
    // form_urlencoded writes spaces as '+'; S3 reads '+' as a space too, but be exact.
    Ok(query.finish().replace('+', "%20"))
}

#[cfg(test)]
mod tests {
    //! AWS's published SigV4 examples for S3 ("Signature Calculations for the Authorization
    //! Header" and "Query String Authentication"), with their fixed keys and clock.

    use super::*;
    use crate::objects::key::encode_key;

    fn example_credentials() -> Credentials {
        Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "AWS documentation",
        )
    }

    fn may_24_2013() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn signature_of(headers: &[(&str, String)]) -> String {
        let auth = headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        auth.rsplit_once("Signature=").unwrap().1.to_string()
    }

    #[test]
    fn get_object_with_range() {
        let credentials = example_credentials();
        let path = format!("/{}", encode_key("test.txt"));
        let headers = sign_headers(&SignInput {
            credentials: &credentials,
            region: "us-east-1",
            method: "GET",
            authority: "examplebucket.s3.amazonaws.com",
            path_and_query: &path,
            extra_headers: &[("range", "bytes=0-9")],
            payload: Some(b""),
            time: may_24_2013(),
        })
        .unwrap();
        assert_eq!(
            signature_of(&headers),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn put_object_with_an_encoded_key() {
        let credentials = example_credentials();
        let path = format!("/{}", encode_key("test$file.text"));
        assert_eq!(path, "/test%24file.text");
        let headers = sign_headers(&SignInput {
            credentials: &credentials,
            region: "us-east-1",
            method: "PUT",
            authority: "examplebucket.s3.amazonaws.com",
            path_and_query: &path,
            extra_headers: &[
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload: Some(b"Welcome to Amazon S3."),
            time: may_24_2013(),
        })
        .unwrap();
        assert_eq!(
            signature_of(&headers),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    /// A GET of `/test.txt` with an unsigned payload, as postern sends them.
    fn unsigned_get(credentials: &Credentials) -> SignInput<'_> {
        SignInput {
            credentials,
            region: "us-east-1",
            method: "GET",
            authority: "examplebucket.s3.amazonaws.com",
            path_and_query: "/test.txt",
            extra_headers: &[],
            payload: None,
            time: may_24_2013(),
        }
    }

    #[test]
    fn unsigned_payload_for_streamed_gets() {
        let credentials = example_credentials();
        let headers = sign_headers(&unsigned_get(&credentials)).unwrap();
        assert!(headers.contains(&("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string())));
        assert!(headers.contains(&("x-amz-date", "20130524T000000Z".to_string())));
    }

    #[test]
    fn presigned_get_object() {
        let credentials = example_credentials();
        let query = presign_query(&unsigned_get(&credentials), Duration::from_secs(86400)).unwrap();
        assert!(query.contains("X-Amz-Expires=86400"), "{query}");
        assert!(
            query.contains(
                "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            ),
            "{query}"
        );
        assert!(
            query.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{query}"
        );
    }
}
