// The audit log as CSV (RFC 4180), safe to open in a spreadsheet in any locale. Every field is
// quoted, and a character a spreadsheet would start a formula with (= + - @ tab CR) gets a
// leading apostrophe wherever a cell could begin: at the start of the field, and after every
// comma, semicolon, tab or line break inside it (and any quotes after that) — Vietnamese
// spreadsheets split on ";" (the comma is their decimal mark), and some importers split on a
// separator even inside quotes.

const TRIGGER = /(?<=(?:^|[,;\t\r\n])"*)(?=[=+\-@\t\r])/g;

/** One field, quoted and neutralised. */
export function csvField(value) {
  const text = value === null || value === undefined ? '' : String(value);
  return `"${text.replace(TRIGGER, "'").replace(/"/g, '""')}"`;
}

/** A header line and one line per row (each an object with the columns as keys), CRLF-ended. */
export function csvText(columns, rows) {
  const lines = [columns.map(csvField).join(',')]
    .concat(rows.map((row) => columns.map((c) => csvField(row[c])).join(',')));
  return `${lines.join('\r\n')}\r\n`;
}
