-- Several instances on one database: every change that ends sessions or changes what a user may
-- do is published on the channel postern_revocations, whoever made it (an instance, the command
-- line, an operator with psql). Payloads: 'u:<user id>' (drop the user's cached sessions and
-- token state), 's:<session id hash>' (drop one session) and 'all:' (tables were emptied: drop
-- everything). Notifications go out at commit.

CREATE FUNCTION postern_revoke_user() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('postern_revocations', 'u:' || OLD.id);
        RETURN OLD;
    END IF;
    IF NEW.session_epoch IS DISTINCT FROM OLD.session_epoch
        OR NEW.status IS DISTINCT FROM OLD.status
        OR NEW.username IS DISTINCT FROM OLD.username
        OR NEW.email IS DISTINCT FROM OLD.email
        OR NEW.password_changed_at IS DISTINCT FROM OLD.password_changed_at THEN
        PERFORM pg_notify('postern_revocations', 'u:' || NEW.id);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_revoke AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION postern_revoke_user();

CREATE FUNCTION postern_revoke_roles() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('postern_revocations', 'u:' || NEW.user_id);
    ELSE
        PERFORM pg_notify('postern_revocations', 'u:' || OLD.user_id);
        IF TG_OP = 'UPDATE' AND NEW.user_id IS DISTINCT FROM OLD.user_id THEN
            PERFORM pg_notify('postern_revocations', 'u:' || NEW.user_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER user_roles_revoke AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION postern_revoke_roles();

-- Sessions removed (logout, revocation) unless they had expired more than five minutes before
-- (a margin for clocks that disagree): the janitor's cleanup is not news.
CREATE FUNCTION postern_revoke_session() RETURNS trigger AS $$
BEGIN
    IF OLD.idle_expires_at > extract(epoch FROM now()) - 300
        AND OLD.absolute_expires_at > extract(epoch FROM now()) - 300 THEN
        PERFORM pg_notify('postern_revocations', 's:' || OLD.id_hash);
    END IF;
    RETURN OLD;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_revoke AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION postern_revoke_session();

-- Sessions changed in place: another user or epoch, or an expiry brought forward.
CREATE FUNCTION postern_revoke_changed_session() RETURNS trigger AS $$
BEGIN
    IF NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.epoch IS DISTINCT FROM OLD.epoch
        OR NEW.idle_expires_at < OLD.idle_expires_at
        OR NEW.absolute_expires_at < OLD.absolute_expires_at THEN
        PERFORM pg_notify('postern_revocations', 's:' || OLD.id_hash);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_revoke_update AFTER UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION postern_revoke_changed_session();

CREATE FUNCTION postern_revoke_all() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('postern_revocations', 'all:');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_revoke_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION postern_revoke_all();
CREATE TRIGGER user_roles_revoke_truncate AFTER TRUNCATE ON user_roles
    FOR EACH STATEMENT EXECUTE FUNCTION postern_revoke_all();
CREATE TRIGGER sessions_revoke_truncate AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION postern_revoke_all();
