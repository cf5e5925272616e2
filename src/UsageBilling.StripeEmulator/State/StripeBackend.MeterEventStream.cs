using System.Globalization;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

/// <summary>One event of a <c>POST /v2/billing/meter_event_stream</c> request, shape-checked by the handler.</summary>
internal sealed record StreamMeterEvent(string? Identifier, string EventName, long? Timestamp, Dictionary<string, string> Payload);

/// <summary>A v2 meter event session: its token authorises stream requests until <see cref="ExpiresAt"/>.</summary>
internal sealed class MeterEventSessionRecord
{
    public required string Id { get; init; }

    public required string Token { get; init; }

    /// <summary>The secret key that created the session (stream requests count under it).</summary>
    public required string ApiKey { get; init; }

    public long Created { get; init; }

    public long ExpiresAt { get; set; }
}

internal sealed partial class StripeBackend
{
    // Sessions are not saved with the state file: they last 15 minutes, and a client whose token the emulator
    // forgot gets a 401 and opens a new session, as after Stripe's own expiry.
    private readonly Dictionary<string, MeterEventSessionRecord> _sessions = new(StringComparer.Ordinal);

    /// <summary><c>POST /v2/billing/meter_event_session</c>: a token valid for <see cref="StripeEmulatorOptions.MeterEventSessionLifetime"/>.</summary>
    public JsonObject CreateMeterEventSession(string apiKey)
    {
        var now = Runtime.Clock.GetUtcNow();
        var session = new MeterEventSessionRecord
        {
            Id = NewId("mes_"),
            Token = NewSecret("mes_tok_test_", 40),
            ApiKey = apiKey,
            Created = now.ToUnixTimeSeconds(),
            ExpiresAt = (now + Runtime.Options.MeterEventSessionLifetime).ToUnixTimeSeconds(),
        };
        lock (_gate)
        {
            // Expired sessions are forgotten when the next one is made, so a long run does not accumulate them.
            foreach (var stale in _sessions.Values.Where(s => s.ExpiresAt < session.Created - 86400).Select(s => s.Token).ToList())
            {
                _sessions.Remove(stale);
            }

            _sessions[session.Token] = session;
        }

        return new JsonObject
        {
            ["id"] = session.Id,
            ["object"] = "v2.billing.meter_event_session",
            ["authentication_token"] = session.Token,
            ["created"] = UnixToIso(session.Created),
            ["expires_at"] = UnixToIso(session.ExpiresAt),
            ["livemode"] = false,
        };
    }

    /// <summary>The session a stream token belongs to, or throws the 401 Stripe answers (unknown or expired token).</summary>
    public MeterEventSessionRecord AuthenticateSession(string token)
    {
        MeterEventSessionRecord? session;
        lock (_gate)
        {
            session = _sessions.GetValueOrDefault(token);
        }

        if (session is null)
        {
            throw new StripeApiException(401, "invalid_request_error", "invalid_api_key",
                "Invalid meter event session token provided. Create a session with POST /v2/billing/meter_event_session and send its authentication_token.",
                null, "invalid_session_token");
        }

        if (Now >= session.ExpiresAt)
        {
            throw new StripeApiException(401, "temporary_session_expired", "billing_meter_event_session_expired",
                "The meter event session has expired. Create a new session with POST /v2/billing/meter_event_session.",
                null, "billing_meter_event_session_expired");
        }

        return session;
    }

    /// <summary>Inspection: expires every open session now (their next stream request gets <c>billing_meter_event_session_expired</c>).</summary>
    public int ExpireMeterEventSessions()
    {
        var now = Now;
        lock (_gate)
        {
            var open = _sessions.Values.Where(s => s.ExpiresAt > now).ToList();
            foreach (var s in open)
            {
                s.ExpiresAt = now;
            }

            return open.Count;
        }
    }

    /// <summary>
    /// Records a stream request's events in the same store as v1 meter events, so summaries and invoices count them.
    /// Nothing is refused here: a repeated identifier inside the dedup window is dropped (the request still succeeds),
    /// and every rule v1 checks synchronously (value, 35-day window) is reported like v1's asynchronous ones, as a
    /// thin error-report event naming the identifier.
    /// </summary>
    /// <returns>How many events were new and how many were duplicates dropped.</returns>
    public (int Recorded, int Duplicates) RecordStreamEvents(IReadOnlyList<StreamMeterEvent> events)
    {
        var now = Now;
        var dedupWindow = (long)Runtime.Options.IdentifierDedupWindow.TotalSeconds;
        var recorded = 0;
        var duplicates = 0;
        lock (_gate)
        {
            foreach (var e in events)
            {
                var identifier = e.Identifier ?? NewId("evt_id_", 20);
                if (_meterEvents.SeenSince(identifier, now - dedupWindow))
                {
                    duplicates++;
                    continue;
                }

                var meter = _metersByEventName.GetValueOrDefault(e.EventName);
                var customer = e.Payload.GetValueOrDefault(meter?.CustomerKey ?? "stripe_customer_id");
                var valueKey = meter?.ValueKey ?? "value";
                var timestamp = e.Timestamp ?? now;
                string? error = timestamp < now - ThirtyFiveDays ? "timestamp_too_far_in_past" : null;
                var hasValue = e.Payload.TryGetValue(valueKey, out var raw);
                long value = 1;
                if (hasValue)
                {
                    try
                    {
                        value = ParseValue(raw!, valueKey);
                    }
                    catch (StripeApiException ex)
                    {
                        error ??= ex.Code;
                        value = 0;
                    }
                }

                AddMeterEventLocked(identifier, e.EventName, meter, customer, value, hasValue, timestamp, timestamp > now + FiveMinutes, now, e.Payload, error);
                recorded++;
            }
        }

        return (recorded, duplicates);
    }

    /// <summary>Parses a v2 timestamp (ISO 8601); <see langword="null"/> when it is not one.</summary>
    public static long? ParseIsoTimestamp(string value) =>
        DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at)
            ? at.ToUnixTimeSeconds()
            : null;
}
