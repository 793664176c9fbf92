package mfa

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// A Notice tells a user, at their email address, of a change to the
// security of their account, so that a change they did not make does not
// go unseen.
type Notice struct {
	EventID int64 // the event the notice is about; a resent notice keeps it
	At      time.Time
	To      string // the account's email address
	Subject string
	Body    string // plain text, never a secret, code or token
}

// Notifier delivers notices, by email for instance. Notify returns once the
// notice is handed on (an SMTP server accepted it); an error means it was
// not, and the Service tries again later. A notice may be delivered twice
// when the process stops between delivery and its record: a Notifier marks
// it with its EventID so that mail clients can tell.
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// ErrNoticeRefused, wrapped in a Notifier's error, says that trying again
// cannot help (the mail server refused the address for good): the notice
// is given up at once.
var ErrNoticeRefused = errors.New("notice refused")

// Delivery of notices. A notice is queued in the same write as its event;
// it is then delivered at least once, by whichever instance claims it
// first, or given up with an error in the log.
const (
	// noticeLease is how long claimed notices stay with their claimer:
	// more than the deliveries of a batch may take, one after another, so
	// that no other instance sends them meanwhile.
	noticeBatch       = 4
	noticeSendTimeout = 30 * time.Second
	noticeLease       = noticeBatch*noticeSendTimeout + time.Minute
	// A notice still undelivered after noticeMaxAttempts tries, or
	// noticeMaxAge after its event, is given up, and the log says so: a
	// notice days late would alarm more than it informs.
	noticeMaxAttempts = 10
	noticeMaxAge      = 24 * time.Hour
	noticeFirstRetry  = time.Minute
	noticeMaxRetry    = time.Hour
	// noticePoll is how often an instance looks for notices queued by
	// others, or due again; its own changes wake it at once.
	noticePoll = 10 * time.Second
)

// noticeTypes are the events the user is told of: the changes to how the
// account is protected, and the use of a backup code.
var noticeTypes = []EventType{EventTwoFactorEnabled, EventTwoFactorDisabled, EventTwoFactorReset,
	EventBackupCodesRegenerated, EventBackupCodeUsed, EventPasswordChanged, EventPasswordReset}

func notifies(t EventType) bool { return slices.Contains(noticeTypes, t) }

// noticeCap is how many changes to one account within noticeCapWindow are
// told; the changes beyond are recorded, not emailed. Sign-up checks no
// address, so without a cap anyone could have the server mail someone
// else's address in a loop. Whoever makes that many changes to an account
// has set off that many notices already.
const (
	noticeCap       = 10
	noticeCapWindow = time.Hour
)

// noticeAllowed reports whether a notice of e keeps its user within
// noticeCap, counting the changes recorded before it. Concurrent changes
// may each see the count below the cap: a few more go out, not thousands.
func (s *Service) noticeAllowed(ctx context.Context, e *Event) bool {
	n, err := s.store.CountEvents(ctx, e.UserID, noticeTypes, e.At.Add(-noticeCapWindow))
	if err != nil {
		s.log.ErrorContext(ctx, "count changes to cap notices", "user_id", e.UserID, "err", err)
		return true // a notice too many rather than one too few
	}
	if n >= noticeCap {
		s.log.WarnContext(ctx, "notice not queued: too many changes to the account within the hour",
			"user_id", e.UserID, "event", string(e.Type), "changes", n)
		return false
	}
	return true
}

// Notifying reports whether the Service has a Notifier to send notices
// with.
func (s *Service) Notifying() bool { return s.notifier != nil }

// DeliverNotices delivers the queued notices, as they come due, until ctx
// is done. Every instance may run it: each notice is claimed by one.
// Without a Notifier, it drops the notices a day overdue, which no
// instance with one has sent: an installation without mail keeps no queue.
func (s *Service) DeliverNotices(ctx context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-s.noticeQueued:
		}
		n, err := s.DeliverDueNotices(ctx)
		if err != nil {
			s.log.ErrorContext(ctx, "deliver notices", "err", err)
		}
		wait := noticePoll
		if n == noticeBatch && err == nil {
			wait = 0 // more may be due
		}
		poll.Reset(wait)
	}
}

// DeliverDueNotices claims the notices due now, at most one batch, tries
// to deliver each, and returns how many it claimed. Without a Notifier, it
// claims only the notices due a day ago and drops them. Once ctx is done,
// it sends no more; the notices of the batch not tried stay claimed until
// their lease ends, then go to whichever instance claims them.
func (s *Service) DeliverDueNotices(ctx context.Context) (int, error) {
	now := s.clock()
	dueBy := now
	if s.notifier == nil {
		dueBy = now.Add(-noticeMaxAge)
	}
	queued, err := s.store.ClaimNotices(ctx, dueBy, now.Add(noticeLease), noticeBatch)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil // stopped
		}
		return 0, fmt.Errorf("mfa: claim notices: %w", err)
	}
	var errs []error
	for _, q := range queued {
		if ctx.Err() != nil {
			break
		}
		var next time.Time // off the queue
		if s.notifier != nil {
			next = s.deliverNotice(ctx, q)
		} else {
			s.log.WarnContext(ctx, "notice dropped: no mail server to send it with",
				"event_id", q.Event.ID, "user_id", q.Event.UserID, "event", string(q.Event.Type))
		}
		// Recorded even when ctx ended during the delivery (the loop
		// stopped): a notice sent but not recorded would be sent again.
		saveCtx, cancel := followUp(ctx)
		if err := s.store.RescheduleNotice(saveCtx, q.Event.ID, next); err != nil {
			errs = append(errs, fmt.Errorf("mfa: reschedule notice of event %d: %w", q.Event.ID, err))
		}
		cancel()
	}
	return len(queued), errors.Join(errs...)
}

// deliverNotice hands q to the Notifier and returns when it is due again:
// never (zero) once delivered or given up, later after a failure, each
// retry waiting twice as long as the one before.
func (s *Service) deliverNotice(ctx context.Context, q QueuedNotice) time.Time {
	attrs := []any{"event_id", q.Event.ID, "user_id", q.Event.UserID, "event", string(q.Event.Type), "attempt", q.Attempts}
	if s.clock().Sub(q.Event.At) >= noticeMaxAge {
		s.log.ErrorContext(ctx, "notice given up: a day late", attrs...)
		return time.Time{}
	}
	sendCtx, cancel := context.WithTimeout(ctx, noticeSendTimeout)
	err := s.notifier.Notify(sendCtx, s.notice(q))
	cancel()
	if err == nil {
		s.log.InfoContext(ctx, "notice delivered", attrs...)
		return time.Time{}
	}
	attrs = append(attrs, "err", err)
	if ctx.Err() != nil { // stopped: due again at once, for the next claim, with no back-off
		s.log.WarnContext(ctx, "notice not delivered: stopping", attrs...)
		return q.Event.At
	}
	// One a day late is given up before its next try.
	if errors.Is(err, ErrNoticeRefused) || q.Attempts >= noticeMaxAttempts {
		s.log.ErrorContext(ctx, "notice given up", attrs...)
		return time.Time{}
	}
	retry := noticeFirstRetry
	for i := 1; i < q.Attempts && retry < noticeMaxRetry; i++ {
		retry *= 2
	}
	retry = min(retry, noticeMaxRetry)
	s.log.WarnContext(ctx, "notice not delivered, will retry", append(attrs, "retry_in", retry.String())...)
	return s.clock().Add(retry)
}

// notice words the notice of q's event.
func (s *Service) notice(q QueuedNotice) Notice {
	e := q.Event
	// A change made by a command on the server has no IP address: its
	// event names where it came from instead ("command line").
	from := "From IP address: " + e.IP
	if _, err := netip.ParseAddr(e.IP); err != nil {
		from = "From: " + cmp.Or(e.IP, "not known")
	}
	body := fmt.Sprintf(`The security of your %s account %s has changed:

    %s
    When: %s
    %s

If you made this change, there is nothing to do.

If you did not, someone else may know your password: sign in, change
your password and check your two-factor authentication, or ask your
administrator for help at once.

This message was sent automatically; replies are not read.
`, s.issuer, q.Email, e.Summary(), e.At.UTC().Format("Mon, 2 Jan 2006 15:04 MST"), from)
	return Notice{EventID: e.ID, At: e.At, To: q.Email, Subject: s.issuer + ": " + e.Summary(), Body: body}
}
