-- Each grant's fixed scope is sealed with an HMAC under the vault's grant-seal key (see
-- src/crypto/grant_seal.rs); a row whose seal does not check is refused as tampered. Grants made
-- before this version are sealed once, as they are, by the process that makes the key.
ALTER TABLE grants ADD COLUMN seal TEXT;
