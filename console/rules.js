// The same input rules as the API, checked while people type so they learn of a mistake at the
// field, before anything is sent. The API checks again; these only save a round trip.

/** A CCCD / personal identification number: exactly 12 digits. Returns an i18n key or null. */
export function nationalIdProblem(text) {
  if (text === '') return 'err.nid.empty';
  if (!/^[0-9]*$/.test(text)) return 'err.nid.digits';
  if (text.length !== 12) return 'err.nid.length';
  return null;
}

/** The national dossier code shape, e.g. 000.00.31.H40-261124-0042: agency code, YYMMDD, sequence. */
export const DOSSIER_SHAPE = /^[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3}-[0-9]{6}-[0-9]{4}$/;

export function dossierProblem(text) {
  if (text === '') return 'err.dossier.empty';
  if (!DOSSIER_SHAPE.test(text)) return 'err.dossier.shape';
  const [yy, mm, dd] = [text.slice(14, 16), text.slice(16, 18), text.slice(18, 20)].map(Number);
  const date = new Date(2000 + yy, mm - 1, dd);
  if (date.getMonth() !== mm - 1 || date.getDate() !== dd) return 'err.dossier.date';
  return null;
}

/** Staff ids and office codes: what the API calls a code. */
export function codeProblem(text) {
  if (text === '') return 'err.required';
  if (!/^[A-Za-z0-9.\-_/:@]{1,64}$/.test(text)) return 'err.code';
  return null;
}

/** Free text: not empty, no control or invisible characters, bounded. The same characters as
 * `parse_text` in src/domain.rs refuses (by Unicode general category: Cc, Cf, Zl, Zp, Co, Cs, Cn,
 * and the Hangul fillers); tests/rules_cases.json is run against both. */
export function textProblem(text, max = 200) {
  if (text.trim() === '') return 'err.required';
  if ([...text].length > max) return 'err.too_long';
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cs}\p{Cn}\u115F\u1160\u3164\uFFA0]/u.test(text)) return 'err.control';
  return null;
}

export const ACCEPTED_TYPES = ['application/pdf', 'image/jpeg', 'image/png', 'image/tiff'];

/** Shows a CCCD with only its first 3 and last 3 digits, as on a receipt. */
export function maskNationalId(nid) {
  return nid.length === 12 ? `${nid.slice(0, 3)}******${nid.slice(9)}` : '************';
}
