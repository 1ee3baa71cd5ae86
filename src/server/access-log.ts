/**
 * One line per request in NCSA Combined Log Format, as Apache and nginx write it, so that the
 * usual tools (goaccess, awk one-liners, log shippers) read it, plus three fields at the end:
 *
 *   host - - [22/Nov/2026:14:03:05 +0000] "POST /v1/ml/moss/data HTTP/1.1" 200 10752 "-" "curl/8.1" rid=8f2c... ms=12 -
 *
 * `rid=` is the request id (X-Request-Id), `ms=` the time to the last byte, and the last field is
 * `-`, or `aborted` when the response was cut off (batch failed mid-stream, client went away).
 * The user field is always `-`: a bearer token is a secret and never goes to a log.
 */

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export interface AccessLogEntry {
  remote: string;
  time: Date;
  method: string;
  url: string;
  httpVersion: string;
  status: number;
  /** Body bytes sent; undefined when none. */
  bytes: number | undefined;
  referer: string | undefined;
  userAgent: string | undefined;
  requestId: string;
  ms: number;
  aborted: boolean;
}

export function combinedLogLine(e: AccessLogEntry): string {
  const request = `${e.method} ${e.url} HTTP/${e.httpVersion}`;
  const bytes = e.bytes === undefined || e.bytes === 0 ? '-' : String(e.bytes);
  return (
    `${e.remote || '-'} - - [${clfDate(e.time)}] "${escape(request)}" ${e.status} ${bytes} ` +
    `"${escape(e.referer ?? '-')}" "${escape(e.userAgent ?? '-')}" rid=${e.requestId} ms=${Math.round(e.ms)} ${e.aborted ? 'aborted' : '-'}\n`
  );
}

/** `10/Oct/2000:13:55:36 +0000`, in UTC so that lines from hosts in other zones sort together. */
export function clfDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Quotes, backslashes and control bytes as nginx escapes them, so one request is one line. */
function escape(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/["\\\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
