-- The signed (seq, head) pairs kept every 256 entries were called "checkpoints", a word that
-- means only the C2SP notes (audit_notes) everywhere else. Same rows, their own name.
ALTER TABLE audit_checkpoints RENAME TO audit_signed_heads;
