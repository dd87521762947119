-- A database as the release before versioned schemas left it (bot/store.py of d97589f, through its own API):
-- three requests (pending; approved once of two; submitting with the POST sent), a secret, a token, a lease.
BEGIN TRANSACTION;
CREATE TABLE audit (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                    at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                    from_state TEXT, to_state TEXT, detail TEXT NOT NULL DEFAULT '');
INSERT INTO "audit" VALUES(1,'CR-PREVAB','2026-11-27T09:00:00.000000+00:00','U01REQ0001','created',NULL,'pending_approval','CR-PREVAB · web-01 → ubuntu-22.04 · pending approval · by <@U01REQ0001>');
INSERT INTO "audit" VALUES(2,'CR-PREVAC','2026-11-27T09:00:00.000000+00:00','U01REQ0001','created',NULL,'pending_approval','CR-PREVAC · web-02 → ubuntu-22.04 · pending approval · by <@U01REQ0001>');
INSERT INTO "audit" VALUES(3,'CR-PREVAC','2026-11-27T09:00:00.000000+00:00','U01APR0001','approval',NULL,NULL,'approved by U01APR0001 (1 of 2)');
INSERT INTO "audit" VALUES(4,'CR-PREVAD','2026-11-27T09:00:00.000000+00:00','U01REQ0001','created',NULL,'pending_approval','CR-PREVAD · web-03 → ubuntu-22.04 · pending approval · by <@U01REQ0001>');
INSERT INTO "audit" VALUES(5,'CR-PREVAD','2026-11-27T09:00:00.000000+00:00','U01APR0001','approved','pending_approval','approved','');
INSERT INTO "audit" VALUES(6,'CR-PREVAD','2026-11-27T09:00:00.000000+00:00','bot','submitting','approved','submitting','');
CREATE TABLE leases (
                    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL, acquired_at REAL);
INSERT INTO "leases" VALUES('tracker','old-host:1234:abc',1700000030.0,1700000000.0);
CREATE TABLE page_sessions (
                    sid_hash TEXT PRIMARY KEY, draft_id TEXT NOT NULL, os_type TEXT NOT NULL, user_id TEXT NOT NULL,
                    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, state_hash TEXT, binding_hash TEXT,
                    nonce TEXT, signed_in_user TEXT);
CREATE TABLE "requests" (
   "id" TEXT PRIMARY KEY,
   "state" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT,
   "requester" TEXT,
   "origin_channel" TEXT,
   "server_id" TEXT NOT NULL,
   "server_name" TEXT,
   "server_status" TEXT,
   "current_image_id" TEXT,
   "current_image_name" TEXT,
   "target_image_id" TEXT,
   "target_image_name" TEXT,
   "target_os_type" TEXT,
   "cloud_init" INTEGER,
   "login" TEXT,
   "keyname" TEXT,
   "has_password" INTEGER,
   "stop_first" INTEGER,
   "stop_type" TEXT,
   "reason" TEXT,
   "ticket" TEXT,
   "notify_channels" TEXT,
   "checklist" TEXT,
   "approvals_channel" TEXT,
   "approvals_required" INTEGER,
   "approvals" TEXT,
   "expires_at" TEXT,
   "decided_by" TEXT,
   "decision_note" TEXT,
   "approval_ts" TEXT,
   "status_channel" TEXT,
   "status_ts" TEXT,
   "stop_job_id" TEXT,
   "job_id" TEXT,
   "stop_sent_at" TEXT,
   "submit_sent_at" TEXT,
   "submitted_at" TEXT,
   "finished_at" TEXT,
   "deadline_at" TEXT,
   "overdue" INTEGER,
   "error_code" TEXT,
   "fail_reason" TEXT,
   "result" TEXT,
   "next_poll_at" REAL,
   "poll_failures" INTEGER,
   "job_status" TEXT,
   "job_progress" TEXT,
   "notified_state" TEXT
);
INSERT INTO "requests" VALUES('CR-PREVAB','pending_approval','2026-11-27T09:00:00.000000+00:00','2026-11-27T09:00:00.000000+00:00','U01REQ0001','C01ORIGIN1','srv-1','web-01','',NULL,NULL,'img-1','ubuntu-22.04','Linux',0,'keypair','ops-key',0,0,'SOFT','made by the previous release',NULL,'["C01NOTIFY1"]','[]','C01APPROVE1',1,'[]','2026-11-27T10:00:00.000000+00:00',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL);
INSERT INTO "requests" VALUES('CR-PREVAC','pending_approval','2026-11-27T09:00:00.000000+00:00','2026-11-27T09:00:00.000000+00:00','U01REQ0001','C01ORIGIN1','srv-2','web-02','',NULL,NULL,'img-1','ubuntu-22.04','Linux',0,'keypair','ops-key',0,0,'SOFT','made by the previous release',NULL,'["C01NOTIFY1"]','[]','C01APPROVE1',2,'["U01APR0001"]','2026-11-27T10:00:00.000000+00:00',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,0,NULL,NULL,NULL);
INSERT INTO "requests" VALUES('CR-PREVAD','submitting','2026-11-27T09:00:00.000000+00:00','2026-11-27T09:00:00.000000+00:00','U01REQ0001','C01ORIGIN1','srv-3','web-03','',NULL,NULL,'img-1','ubuntu-22.04','Linux',0,'keypair','ops-key',0,0,'SOFT','made by the previous release',NULL,'["C01NOTIFY1"]','[]','C01APPROVE1',1,'[]','2026-11-27T10:00:00.000000+00:00','U01APR0001',NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-27T09:00:00.000000+00:00',NULL,NULL,NULL,0,NULL,NULL,NULL,1800000000.5,0,NULL,NULL,NULL);
CREATE TABLE secrets (
                    key TEXT PRIMARY KEY, ciphertext BLOB NOT NULL, created_at TEXT NOT NULL, expires_at TEXT, set_by TEXT, set_via TEXT);
INSERT INTO "secrets" VALUES('request:CR-PREVAD',X'67414141412D636970686572746578742D6F6E6C79','2026-11-27T09:00:00.000000+00:00','2026-11-28T09:00:00.000000+00:00',NULL,NULL);
CREATE TABLE tokens (
                    token_hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, subject TEXT NOT NULL,
                    user_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT);
INSERT INTO "tokens" VALUES('hash-1','password','d1|Linux','U01REQ0001','2026-11-27T09:00:00.000000+00:00','2026-11-27T09:10:00.000000+00:00',NULL);
CREATE INDEX requests_state ON requests(state);
CREATE INDEX requests_created ON requests(created_at);
CREATE UNIQUE INDEX requests_one_live_per_server ON requests(server_id) WHERE state IN ('approved', 'pending_approval', 'reconciling', 'running', 'stopping', 'submitting');
CREATE INDEX audit_request ON audit(request_id, seq);
CREATE INDEX page_sessions_draft ON page_sessions(draft_id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit',6);
COMMIT;
