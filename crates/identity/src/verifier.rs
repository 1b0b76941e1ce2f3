//! A rustls server-certificate verifier in two halves: what a verifier decides about the server's
//! certificate, which is its own, and the check of the handshake's signatures, which is always
//! the crypto provider's.
//!
//! A custom [`ServerCertVerifier`] must also check the signatures the server makes with its key
//! during the handshake. Written out in every verifier, that is the same three delegations each
//! time, and one that is wrong (or accepts anything) would let a server present a certificate it
//! holds no key for. So a verifier here implements [`ServerCertificateCheck`] only, and
//! [`SignatureChecked`] adds the signature checks with the provider's algorithms, in one place.

use std::fmt;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What a verifier decides about a server's certificate: the part of a [`ServerCertVerifier`]
/// that differs from one to the next. Its arguments are those of
/// [`ServerCertVerifier::verify_server_cert`].
pub trait ServerCertificateCheck: fmt::Debug + Send + Sync {
    /// Whether the server presenting `end_entity` (with `intermediates`) is the one meant by
    /// `server_name` at `now`.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A [`ServerCertVerifier`]: the certificate is accepted as `C` decides, and the handshake's
/// signatures are checked with a crypto provider's signature verification algorithms.
#[derive(Debug)]
pub struct SignatureChecked<C> {
    certificate: C,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<C: ServerCertificateCheck> SignatureChecked<C> {
    /// Accepts certificates as `certificate` does; checks signatures as `provider` does.
    pub fn new(certificate: C, provider: &CryptoProvider) -> Self {
        Self {
            certificate,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl<C: ServerCertificateCheck> ServerCertVerifier for SignatureChecked<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.certificate
            .check(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
