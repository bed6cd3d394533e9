import { X509Certificate, createPrivateKey } from 'node:crypto';
import { SlipwayError, errorMessage } from '../../contract/errors.js';

/** What the agent needs to know of a certificate chain and its key before nginx may serve them. */
export interface CertificateFacts {
  /** SHA-256 of the leaf certificate (hex, no colons): a changed certificate has another. */
  fingerprint: string;
  /** DNS names of the leaf (subjectAltName), lower-cased. */
  names: string[];
  notBefore: string;
  notAfter: string;
  issuer: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Pure: reads a PEM chain (leaf first) and its private key, and refuses a pair nginx would refuse
 * or serve wrongly: no certificate, an unreadable key, a key that is not the leaf's. Throws
 * tls_certificate_invalid naming `source`; the key's bytes never appear in the error.
 */
export function inspectCertificate(chainPem: string, keyPem: string, source: string): CertificateFacts {
  const invalid = (why: string, cause?: unknown) => new SlipwayError('tls_certificate_invalid', `${source}: ${why}`, {
    status: 400, ...(cause ? { cause } : {}), hint: 'give a PEM certificate chain (leaf first) and the private key of its leaf',
  });
  const blocks = chainPem.match(PEM_CERTIFICATE);
  if (!blocks || blocks.length === 0) throw invalid('no PEM certificate found');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
  } catch (error) {
    throw invalid(`the first certificate cannot be parsed (${errorMessage(error)})`, error);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(keyPem));
  } catch (error) {
    // The key's parse error is generic; never quote key material.
    throw invalid('the private key cannot be read as PEM', error);
  }
  if (!matches) throw invalid('the private key is not the key of the leaf certificate');
  return {
    fingerprint: leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
    names: dnsNames(leaf.subjectAltName),
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    issuer: leaf.issuer.replace(/\n/g, ', '),
  };
}

/** Pure: the DNS names of a subjectAltName string ("DNS:a.test, DNS:b.test, IP Address:…"). */
export function dnsNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName.split(/,\s*/).filter((entry) => entry.startsWith('DNS:')).map((entry) => entry.slice(4).toLowerCase());
}

/** Pure: whether a certificate name covers a host name ("*.a.test" covers "x.a.test", not "a.test" or "y.x.a.test"). */
export function nameCovers(certName: string, host: string): boolean {
  const name = certName.toLowerCase();
  const wanted = host.toLowerCase();
  if (name === wanted) return true;
  if (!name.startsWith('*.')) return false;
  const dot = wanted.indexOf('.');
  return dot > 0 && wanted.slice(dot) === name.slice(1);
}

/** Pure: the wanted names no name of the certificate covers. */
export function uncoveredNames(certNames: readonly string[], wanted: readonly string[]): string[] {
  return wanted.filter((host) => !certNames.some((name) => nameCovers(name, host)));
}
