ALTER TABLE items ADD COLUMN description TEXT;
