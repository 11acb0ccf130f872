-- An imported memory keeps the id its source gave it (`python -m bot memory import`), so
-- importing the same file twice adds nothing and a search result can be traced back.
ALTER TABLE memories ADD COLUMN ref TEXT;
CREATE UNIQUE INDEX memories_ref ON memories (ref) WHERE ref IS NOT NULL;
