-- How far a memory's vector sits closer to its nearest neighbours than to the mean memory
-- (`memory.hubness`): recall subtracts it from the centred similarity, so a memory that is
-- near everything in its corner of the store does not crowd out the one a query is about.
-- NULL until worked out (recall then uses the centred similarity alone); `hubness_at` is
-- when, so the oldest are worked out again first.
ALTER TABLE memories ADD COLUMN hubness DOUBLE PRECISION;
ALTER TABLE memories ADD COLUMN hubness_at DOUBLE PRECISION;
