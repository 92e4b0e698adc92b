-- The clerk's and the citizen's screens list a citizen's grants, newest first.
CREATE INDEX grants_by_citizen ON grants (citizen_idx, created_at);
