-- The office of the officer a grant is for: the citizen's access log says "from which office"
-- for every read. Grants made before this column existed record '-'.
ALTER TABLE grants ADD COLUMN grantee_office TEXT NOT NULL DEFAULT '-';
