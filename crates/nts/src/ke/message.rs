//! NTS-KE messages (RFC 8915 §4): the client's request, the server's
//! response, and the rules each side enforces when reading the other's.
//!
//! Sans-IO: messages are built into and parsed from byte buffers; the TLS
//! plumbing lives in [`crate::ke::client`] and [`crate::ke::server`].

use crate::aead::AEAD_AES_SIV_CMAC_256;
use crate::error::KeError;
use crate::ke::record::{
    encode_records, records, Record, ERR_BAD_REQUEST, ERR_UNRECOGNIZED_CRITICAL, PROTOCOL_NTPV4,
};

/// Most cookies a client keeps from one response (RFC 8915 suggests 8).
pub const MAX_COOKIES: usize = 8;

/// The request a client sends: the protocols and AEAD algorithms it
/// supports, in preference order, and optionally the NTP server/port it
/// would like (servers may ignore these).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeRequest {
    /// Next protocols offered (NTPv4 = 0).
    pub next_protocols: Vec<u16>,
    /// AEAD algorithms offered.
    pub aead_algorithms: Vec<u16>,
    /// Preferred NTP server, if any.
    pub server: Option<String>,
    /// Preferred NTP port, if any.
    pub port: Option<u16>,
}

impl KeRequest {
    /// The request Meridian's client sends: NTPv4 with AES-SIV-CMAC-256.
    pub fn ntpv4() -> Self {
        KeRequest {
            next_protocols: vec![PROTOCOL_NTPV4],
            aead_algorithms: vec![AEAD_AES_SIV_CMAC_256],
            server: None,
            port: None,
        }
    }

    /// The wire form, ending with End of Message.
    pub fn encode(&self) -> Vec<u8> {
        let mut recs = vec![
            Record::NextProtocol(self.next_protocols.clone()),
            Record::AeadAlgorithm(self.aead_algorithms.clone()),
        ];
        recs.extend(self.server.clone().map(Record::Server));
        recs.extend(self.port.map(Record::Port));
        recs.push(Record::EndOfMessage);
        encode_records(&recs)
    }

    /// Parses a complete request message as a server must (RFC 8915 §4.1):
    /// exactly one critical Next Protocol record; exactly one AEAD record
    /// when NTPv4 is offered; no Error, Warning or New Cookie records; an
    /// unknown critical record is refused. On failure returns the Error
    /// record code to answer with.
    pub fn parse(msg: &[u8]) -> Result<KeRequest, u16> {
        let mut next: Option<Vec<u16>> = None;
        let mut aead: Option<Vec<u16>> = None;
        let mut req = KeRequest {
            next_protocols: Vec::new(),
            aead_algorithms: Vec::new(),
            server: None,
            port: None,
        };
        for raw in records(msg) {
            let raw = raw.map_err(|_| ERR_BAD_REQUEST)?;
            let rec = Record::decode(&raw).map_err(|_| ERR_BAD_REQUEST)?;
            match rec {
                Record::EndOfMessage if raw.critical => {}
                Record::NextProtocol(ids) if raw.critical && next.is_none() && !ids.is_empty() => {
                    next = Some(ids)
                }
                Record::AeadAlgorithm(ids) if aead.is_none() && !ids.is_empty() => aead = Some(ids),
                Record::Server(s) if req.server.is_none() => req.server = Some(s),
                Record::Port(p) if req.port.is_none() => req.port = Some(p),
                Record::Unknown { critical: true, .. } => return Err(ERR_UNRECOGNIZED_CRITICAL),
                Record::Unknown {
                    critical: false, ..
                } => {}
                _ => return Err(ERR_BAD_REQUEST),
            }
        }
        req.next_protocols = next.ok_or(ERR_BAD_REQUEST)?;
        if req.next_protocols.contains(&PROTOCOL_NTPV4) {
            req.aead_algorithms = aead.ok_or(ERR_BAD_REQUEST)?;
        } else {
            req.aead_algorithms = aead.unwrap_or_default();
        }
        Ok(req)
    }
}

/// A server's successful answer, as the client reads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeResponse {
    /// The negotiated protocol (always NTPv4 once validated).
    pub next_protocol: u16,
    /// The negotiated AEAD algorithm.
    pub aead_algorithm: u16,
    /// Cookies for the NTP exchanges (at most [`MAX_COOKIES`] kept).
    pub cookies: Vec<Vec<u8>>,
    /// The NTP server to use instead of the NTS-KE host, if the server said.
    pub server: Option<String>,
    /// The NTP port to use instead of 123, if the server said.
    pub port: Option<u16>,
    /// Warning codes the server sent (informational).
    pub warnings: Vec<u16>,
}

impl KeResponse {
    /// Parses a complete response as a client must: an Error record fails
    /// the exchange; the server must pick exactly one protocol and one AEAD
    /// algorithm out of those `offered`, and send at least one cookie;
    /// unknown critical records fail the exchange, unknown non-critical
    /// ones are ignored.
    pub fn parse(msg: &[u8], offered: &KeRequest) -> Result<KeResponse, KeError> {
        let mut next: Option<Vec<u16>> = None;
        let mut aead: Option<Vec<u16>> = None;
        let mut resp = KeResponse {
            next_protocol: 0,
            aead_algorithm: 0,
            cookies: Vec::new(),
            server: None,
            port: None,
            warnings: Vec::new(),
        };
        let mut error = None;
        for raw in records(msg) {
            let raw = raw?;
            match Record::decode(&raw)? {
                Record::EndOfMessage => {}
                Record::Error(code) => error = error.or(Some(code)),
                Record::Warning(code) => resp.warnings.push(code),
                Record::NextProtocol(ids) => {
                    if next.replace(ids).is_some() {
                        return Err(KeError::Malformed("two Next Protocol records"));
                    }
                }
                Record::AeadAlgorithm(ids) => {
                    if aead.replace(ids).is_some() {
                        return Err(KeError::Malformed("two AEAD records"));
                    }
                }
                Record::NewCookie(c) => {
                    if resp.cookies.len() < MAX_COOKIES {
                        resp.cookies.push(c);
                    }
                }
                Record::Server(s) => {
                    if resp.server.replace(s).is_some() {
                        return Err(KeError::Malformed("two Server records"));
                    }
                }
                Record::Port(p) => {
                    if resp.port.replace(p).is_some() {
                        return Err(KeError::Malformed("two Port records"));
                    }
                }
                Record::Unknown {
                    critical: true,
                    record_type,
                    ..
                } => return Err(KeError::UnrecognizedCritical(record_type)),
                Record::Unknown {
                    critical: false, ..
                } => {}
            }
        }
        if let Some(code) = error {
            return Err(KeError::ServerError(code));
        }
        resp.next_protocol = match next.as_deref() {
            Some([p]) if offered.next_protocols.contains(p) => *p,
            Some([]) => {
                return Err(KeError::Negotiation(
                    "server supports none of our protocols",
                ))
            }
            _ => return Err(KeError::Malformed("bad Next Protocol record")),
        };
        resp.aead_algorithm = match aead.as_deref() {
            Some([a]) if offered.aead_algorithms.contains(a) => *a,
            Some([]) | None => {
                return Err(KeError::Negotiation(
                    "server supports none of our AEAD algorithms",
                ))
            }
            _ => return Err(KeError::Malformed("bad AEAD record")),
        };
        if resp.cookies.is_empty() {
            return Err(KeError::Negotiation("server sent no cookies"));
        }
        Ok(resp)
    }
}

/// What the NTS-KE server tells clients about its NTP service.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct NtpServerInfo {
    /// Sent as NTPv4 Server Negotiation when the NTP service is on another
    /// host than the NTS-KE server.
    pub server: Option<String>,
    /// Sent as NTPv4 Port Negotiation when NTP is not on port 123.
    pub port: Option<u16>,
}

/// The server's whole decision for one request message, sans-IO:
/// parses it, negotiates NTPv4 + AES-SIV-CMAC-256, and asks `make_cookies`
/// (given the chosen AEAD id) for the cookies to send. Returns the
/// response bytes. A malformed request gets an Error record, a request
/// offering nothing we support gets an empty Next Protocol or AEAD record
/// (RFC 8915 §4.1.2, §4.1.5), exactly as the client side expects.
pub fn server_response(
    msg: &[u8],
    info: &NtpServerInfo,
    make_cookies: impl FnOnce(u16) -> Result<Vec<Vec<u8>>, u16>,
) -> Vec<u8> {
    let error = |code| encode_records(&[Record::Error(code), Record::EndOfMessage]);
    let req = match KeRequest::parse(msg) {
        Ok(r) => r,
        Err(code) => return error(code),
    };
    if !req.next_protocols.contains(&PROTOCOL_NTPV4) {
        return encode_records(&[Record::NextProtocol(vec![]), Record::EndOfMessage]);
    }
    if !req.aead_algorithms.contains(&AEAD_AES_SIV_CMAC_256) {
        return encode_records(&[
            Record::NextProtocol(vec![PROTOCOL_NTPV4]),
            Record::AeadAlgorithm(vec![]),
            Record::EndOfMessage,
        ]);
    }
    let cookies = match make_cookies(AEAD_AES_SIV_CMAC_256) {
        Ok(c) => c,
        Err(code) => return error(code),
    };
    let mut recs = vec![
        Record::NextProtocol(vec![PROTOCOL_NTPV4]),
        Record::AeadAlgorithm(vec![AEAD_AES_SIV_CMAC_256]),
    ];
    recs.extend(info.server.clone().map(Record::Server));
    recs.extend(info.port.map(Record::Port));
    recs.extend(cookies.into_iter().map(Record::NewCookie));
    recs.push(Record::EndOfMessage);
    encode_records(&recs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ke::record::{ERR_INTERNAL, NEW_COOKIE};
    use proptest::prelude::*;

    fn cookies(_: u16) -> Result<Vec<Vec<u8>>, u16> {
        Ok((0..8).map(|i| vec![i; 100]).collect())
    }

    #[test]
    fn full_negotiation_round_trip() {
        let req = KeRequest::ntpv4();
        let info = NtpServerInfo {
            server: Some("127.0.0.1".into()),
            port: Some(12345),
        };
        let resp = server_response(&req.encode(), &info, cookies);
        let parsed = KeResponse::parse(&resp, &req).unwrap();
        assert_eq!(parsed.next_protocol, 0);
        assert_eq!(parsed.aead_algorithm, 15);
        assert_eq!(parsed.cookies.len(), 8);
        assert_eq!(parsed.cookies[3], vec![3; 100]);
        assert_eq!(parsed.server.as_deref(), Some("127.0.0.1"));
        assert_eq!(parsed.port, Some(12345));
    }

    fn expect_error(msg: &[u8], code: u16) {
        let resp = server_response(msg, &NtpServerInfo::default(), cookies);
        match KeResponse::parse(&resp, &KeRequest::ntpv4()) {
            Err(KeError::ServerError(c)) => assert_eq!(c, code),
            other => panic!("expected error {code}, got {other:?}"),
        }
    }

    #[test]
    fn server_rejects_bad_requests() {
        let np = Record::NextProtocol(vec![0]);
        let aead = Record::AeadAlgorithm(vec![15]);
        let end = Record::EndOfMessage;
        // Missing AEAD, missing next protocol, duplicates, cookies in a request.
        expect_error(&encode_records(&[np.clone(), end.clone()]), ERR_BAD_REQUEST);
        expect_error(
            &encode_records(&[aead.clone(), end.clone()]),
            ERR_BAD_REQUEST,
        );
        expect_error(
            &encode_records(&[np.clone(), np.clone(), aead.clone(), end.clone()]),
            ERR_BAD_REQUEST,
        );
        expect_error(
            &encode_records(&[
                np.clone(),
                aead.clone(),
                Record::NewCookie(vec![1]),
                end.clone(),
            ]),
            ERR_BAD_REQUEST,
        );
        expect_error(
            &encode_records(&[np.clone(), aead.clone(), Record::Error(1), end.clone()]),
            ERR_BAD_REQUEST,
        );
        // Unknown critical record → error 0; non-critical is ignored.
        let unk = |critical| Record::Unknown {
            critical,
            record_type: 0x4321,
            body: vec![1, 2],
        };
        expect_error(
            &encode_records(&[np.clone(), unk(true), aead.clone(), end.clone()]),
            ERR_UNRECOGNIZED_CRITICAL,
        );
        let ok = server_response(
            &encode_records(&[np.clone(), unk(false), aead.clone(), end.clone()]),
            &NtpServerInfo::default(),
            cookies,
        );
        assert!(KeResponse::parse(&ok, &KeRequest::ntpv4()).is_ok());
        // Next Protocol without the critical bit.
        let mut bytes = encode_records(&[np.clone(), aead.clone(), end.clone()]);
        bytes[0] &= 0x7F;
        expect_error(&bytes, ERR_BAD_REQUEST);
        // Truncated request.
        let full = encode_records(&[np, aead, end]);
        expect_error(&full[..full.len() - 1], ERR_BAD_REQUEST);
        // Cookie generation failure → internal error.
        let resp = server_response(&full, &NtpServerInfo::default(), |_| Err(ERR_INTERNAL));
        assert!(matches!(
            KeResponse::parse(&resp, &KeRequest::ntpv4()),
            Err(KeError::ServerError(2))
        ));
    }

    #[test]
    fn unsupported_protocol_or_aead_is_a_negotiation_failure() {
        let req = KeRequest {
            next_protocols: vec![0x8000],
            ..KeRequest::ntpv4()
        };
        let resp = server_response(&req.encode(), &NtpServerInfo::default(), cookies);
        assert!(matches!(
            KeResponse::parse(&resp, &req),
            Err(KeError::Negotiation(_))
        ));
        let req = KeRequest {
            aead_algorithms: vec![30],
            ..KeRequest::ntpv4()
        };
        let resp = server_response(&req.encode(), &NtpServerInfo::default(), cookies);
        assert!(matches!(
            KeResponse::parse(&resp, &req),
            Err(KeError::Negotiation(_))
        ));
    }

    #[test]
    fn client_rejects_bad_responses() {
        let req = KeRequest::ntpv4();
        let parse = |recs: &[Record]| KeResponse::parse(&encode_records(recs), &req);
        let np = Record::NextProtocol(vec![0]);
        let aead = Record::AeadAlgorithm(vec![15]);
        let cookie = Record::NewCookie(vec![7; 100]);
        let end = Record::EndOfMessage;
        assert!(parse(&[np.clone(), aead.clone(), cookie.clone(), end.clone()]).is_ok());
        // No cookies; an AEAD we did not offer; two protocols chosen.
        assert!(parse(&[np.clone(), aead.clone(), end.clone()]).is_err());
        assert!(parse(&[
            np.clone(),
            Record::AeadAlgorithm(vec![17]),
            cookie.clone(),
            end.clone()
        ])
        .is_err());
        assert!(parse(&[
            Record::NextProtocol(vec![0, 0]),
            aead.clone(),
            cookie.clone(),
            end.clone()
        ])
        .is_err());
        assert!(parse(&[aead.clone(), cookie.clone(), end.clone()]).is_err());
        // Unknown critical record in a response.
        let unk = Record::Unknown {
            critical: true,
            record_type: 99,
            body: vec![],
        };
        assert!(matches!(
            parse(&[np.clone(), aead.clone(), unk, cookie.clone(), end.clone()]),
            Err(KeError::UnrecognizedCritical(99))
        ));
        // Cookies beyond MAX_COOKIES are dropped.
        let mut many = vec![np, aead];
        many.extend(std::iter::repeat_n(cookie, 20));
        many.push(end);
        assert_eq!(parse(&many).unwrap().cookies.len(), MAX_COOKIES);
        // A cookie record is sent non-critical.
        let bytes = encode_records(&[Record::NewCookie(vec![1])]);
        assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), NEW_COOKIE);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeRequest::parse(&buf);
            let _ = KeResponse::parse(&buf, &KeRequest::ntpv4());
            let _ = server_response(&buf, &NtpServerInfo::default(), cookies);
        }
    }
}
