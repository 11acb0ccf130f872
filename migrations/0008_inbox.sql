-- Messages the bot must act on, written before Slack is acknowledged and deleted once
-- intake handled them. A crash between the acknowledgement and intake (when Slack will not
-- deliver the event again) leaves the row, and the bot handles it at its next start.
CREATE TABLE slack_inbox (
    event_id    TEXT    PRIMARY KEY,
    message     TEXT    NOT NULL,   -- the parsed message (bot.intake.IncomingMessage) as JSON
    received_at REAL    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
