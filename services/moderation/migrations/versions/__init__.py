# A package so that the migration scripts ship in the wheel beside the code.
