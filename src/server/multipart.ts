/**
 * The buffered GetBatch response, byte for byte as AIStore's target writes it with Go's
 * mime/multipart (`xact/xs/moss.go`): part 1 is form field `metadata` (the MossResp JSON and a
 * newline), part 2 form file `archive` (application/octet-stream). Go writes header keys in
 * sorted order, CRLF line ends, and a 60-hex-digit boundary. The Go client reads the parts in
 * that order and Python's MultipartDecoder by position, so the order is the contract.
 */
import { randomBytes } from 'node:crypto';

export interface MultipartFrame {
  contentType: string;
  /** Everything before the archive bytes. */
  head: Buffer;
  /** Everything after them. */
  tail: Buffer;
}

export const METADATA_PART = 'metadata';
export const ARCHIVE_PART = 'archive';

export function newBoundary(): string {
  return randomBytes(30).toString('hex');
}

export function multipartFrame(metadataJson: string, archiveFileName: string, boundary = newBoundary()): MultipartFrame {
  const head =
    `--${boundary}\r\n` +
    `Content-Disposition: form-data; name="${METADATA_PART}"\r\n\r\n` +
    `${metadataJson}\n` +
    `\r\n--${boundary}\r\n` +
    `Content-Disposition: form-data; name="${ARCHIVE_PART}"; filename="${quote(archiveFileName)}"\r\n` +
    `Content-Type: application/octet-stream\r\n\r\n`;
  return {
    contentType: `multipart/mixed; boundary=${boundary}`,
    head: Buffer.from(head, 'utf8'),
    tail: Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'),
  };
}

/** As Go's escapeQuotes. */
function quote(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}
