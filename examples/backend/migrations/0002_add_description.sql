ALTER TABLE items ADD COLUMN description TEXT;
-- down
ALTER TABLE items DROP COLUMN description;
