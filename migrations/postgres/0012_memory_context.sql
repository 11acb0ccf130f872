-- What a memory answers or follows (an imported message's predecessor in its conversation,
-- given as `context` to `memory import`). Keyword search reads it with the content, so a
-- short reply is found by the question it answers; the vector is of the content alone.
ALTER TABLE memories ADD COLUMN context TEXT;

ALTER TABLE memories DROP COLUMN content_tsv;
ALTER TABLE memories ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS
    (to_tsvector('english', coalesce(context || ' ', '') || content)) STORED;
CREATE INDEX memories_words ON memories USING gin (content_tsv);
