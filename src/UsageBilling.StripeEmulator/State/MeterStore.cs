using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
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

/// <summary>
/// The meters store: <c>/v1/billing/meters</c> and their event summaries, v1 meter events and adjustments, the v2
/// meter event session and stream, and the aggregation invoices bill.
/// </summary>
/// <remarks>
/// Guarded by <see cref="StripeBackend"/>'s one lock, like every store (see <see cref="WebhookStore"/>). The meter-event
/// paths parse and render outside it and take it for the lookups and the write only.
/// </remarks>
internal sealed class MeterStore(Lock gate, EmulatorRuntime runtime, Func<long> now, CustomerStore customers, WebhookStore webhooks)
{
    private const long ThirtyFiveDays = 35L * 86400;
    private const long FiveMinutes = 300;
    private const long AdjustmentWindow = 86400;

    private readonly Lock _gate = gate;
    private readonly EmulatorRuntime _runtime = runtime;
    private readonly Func<long> _now = now;
    private readonly CustomerStore _customers = customers;
    private readonly WebhookStore _webhooks = webhooks;
    private readonly Table<Meter> _meters = new(x => x.Id);
    private readonly Dictionary<string, Meter> _metersByEventName = new(StringComparer.Ordinal);
    private readonly MeterEventLog _meterEvents = new();

    // Sessions are not saved with the state file: they last 15 minutes, and a client whose token the emulator
    // forgot gets a 401 and opens a new session, as after Stripe's own expiry.
    private readonly Dictionary<string, MeterEventSessionRecord> _sessions = new(StringComparer.Ordinal);

    /// <summary>Every meter in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<Meter> All => _meters;

    /// <summary>Every meter event in arrival order (the state file). Caller holds the lock.</summary>
    public IEnumerable<MeterEventRecord> Events => _meterEvents.All;

    /// <summary>The meter events' last sequence number (the state file). Caller holds the lock.</summary>
    public long Sequence => _meterEvents.Sequence;

    /// <summary>A meter by id, or <see langword="null"/>. Caller holds the lock.</summary>
    public Meter? Find(string id) => _meters.GetValueOrDefault(id);

    /// <summary>Whether a meter with this id exists. Caller holds the lock.</summary>
    public bool Contains(string id) => _meters.ContainsKey(id);

    /// <summary>Replaces the contents with the state file's (sessions are not saved). Caller holds the lock.</summary>
    public void Load(IEnumerable<Meter> meters, IEnumerable<MeterEventRecord> events, long sequence)
    {
        _meters.Load(meters);
        foreach (var m in _meters)
        {
            _metersByEventName[m.EventName] = m;
        }

        _meterEvents.Load(events, sequence);
    }

    /// <summary>Forgets every meter, meter event and session. Caller holds the lock.</summary>
    public void Clear()
    {
        _meters.Clear();
        _metersByEventName.Clear();
        _meterEvents.Clear();
        _sessions.Clear();
    }

    private static JsonObject Render(Meter m) => new()
    {
        ["id"] = m.Id,
        ["object"] = "billing.meter",
        ["created"] = m.Created,
        ["customer_mapping"] = new JsonObject { ["event_payload_key"] = m.CustomerKey, ["type"] = "by_id" },
        ["default_aggregation"] = new JsonObject { ["formula"] = m.Formula },
        ["display_name"] = m.DisplayName,
        ["event_name"] = m.EventName,
        ["event_time_window"] = m.EventTimeWindow,
        ["livemode"] = false,
        ["status"] = m.Status,
        ["status_transitions"] = new JsonObject { ["deactivated_at"] = m.DeactivatedAt },
        ["updated"] = m.Updated,
        ["value_settings"] = new JsonObject { ["event_payload_key"] = m.ValueKey },
    };

    public JsonObject Create(Params p)
    {
        p.AllowOnly("display_name", "event_name", "default_aggregation", "customer_mapping", "value_settings", "event_time_window");
        var displayName = p.Required("display_name", 250);
        var eventName = p.Required("event_name", 100);
        var aggregation = p.Obj("default_aggregation") ?? throw StripeApiException.Missing("default_aggregation");
        aggregation.AllowOnly("formula");
        var formula = aggregation.Enum("formula", "count", "last", "sum");
        if (string.IsNullOrEmpty(formula))
        {
            throw StripeApiException.Missing("default_aggregation[formula]");
        }

        var customerKey = "stripe_customer_id";
        if (p.Obj("customer_mapping") is { } cm)
        {
            cm.AllowOnly("event_payload_key", "type");
            customerKey = cm.Required("event_payload_key", 100);
            if (string.IsNullOrEmpty(cm.Enum("type", "by_id")))
            {
                throw StripeApiException.Missing("customer_mapping[type]");
            }
        }

        var valueKey = "value";
        if (p.Obj("value_settings") is { } vs)
        {
            vs.AllowOnly("event_payload_key");
            valueKey = vs.Required("event_payload_key", 100);
        }

        var window = p.Enum("event_time_window", "day", "hour");
        var now = _now();
        lock (_gate)
        {
            if (_metersByEventName.ContainsKey(eventName))
            {
                throw StripeApiException.Invalid(
                    $"A meter with event_name '{eventName}' already exists. Event names must be unique.",
                    "event_name",
                    "resource_already_exists");
            }

            var meter = new Meter
            {
                Id = StripeBackend.NewId("mtr_"),
                Created = now,
                Updated = now,
                DisplayName = displayName,
                EventName = eventName,
                Formula = formula,
                CustomerKey = customerKey,
                ValueKey = valueKey,
                EventTimeWindow = string.IsNullOrEmpty(window) ? null : window,
            };
            _meters.Add(meter);
            _metersByEventName[eventName] = meter;
            return Render(meter);
        }
    }

    private Meter MeterOrThrow(string id) =>
        _meters.TryGetValue(id, out var m) ? m : throw StripeApiException.NoSuch("billing.meter", id);

    public JsonObject Get(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return Render(MeterOrThrow(id));
        }
    }

    public JsonObject Update(string id, Params p)
    {
        p.AllowOnly("display_name");
        var name = p.Str("display_name", 250);
        lock (_gate)
        {
            var m = MeterOrThrow(id);
            if (!string.IsNullOrEmpty(name))
            {
                m.DisplayName = name;
                m.Updated = _now();
            }

            return Render(m);
        }
    }

    public JsonObject SetStatus(string id, Params p, bool active)
    {
        p.AllowOnly();
        lock (_gate)
        {
            var m = MeterOrThrow(id);
            var wanted = active ? "active" : "inactive";
            if (m.Status == wanted)
            {
                throw StripeApiException.Invalid($"This meter is already {wanted}.", null, "billing_meter_invalid_status");
            }

            var now = _now();
            m.Status = wanted;
            m.DeactivatedAt = active ? null : now;
            m.Updated = now;
            return Render(m);
        }
    }

    public JsonObject List(Params p)
    {
        p.AllowOnly("status", "limit", "starting_after", "ending_before");
        var status = p.Enum("status", "active", "inactive");
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_meters, m => string.IsNullOrEmpty(status) || m.Status == status);
            return StripeBackend.ListOf(items, m => m.Id, m => Render(m), p, "/v1/billing/meters");
        }
    }

    public JsonObject EventSummaries(string id, Params p)
    {
        p.AllowOnly("customer", "start_time", "end_time", "value_grouping_window", "limit", "starting_after", "ending_before");
        var customer = p.Required("customer");
        var start = p.Long("start_time") ?? throw StripeApiException.Missing("start_time");
        var end = p.Long("end_time") ?? throw StripeApiException.Missing("end_time");
        var window = p.Enum("value_grouping_window", "day", "hour");
        var step = window switch { "hour" => 3600L, "day" => 86400L, _ => 60L };
        var unit = window switch { "hour" => "hour", "day" => "day (UTC midnight)", _ => "minute" };
        if (start % step != 0)
        {
            throw StripeApiException.Invalid($"start_time must be aligned to a {unit} boundary.", "start_time");
        }

        if (end % step != 0)
        {
            throw StripeApiException.Invalid($"end_time must be aligned to a {unit} boundary.", "end_time");
        }

        if (end <= start)
        {
            throw StripeApiException.Invalid("end_time must be after start_time.", "end_time");
        }

        lock (_gate)
        {
            var meter = MeterOrThrow(id);
            var windows = new List<(long Start, long End)>();
            if (string.IsNullOrEmpty(window))
            {
                windows.Add((start, end));
            }
            else
            {
                if ((end - start) / step > 10_000)
                {
                    throw StripeApiException.Invalid("The requested range has too many windows.", "end_time");
                }

                for (var s = start; s < end; s += step)
                {
                    windows.Add((s, Math.Min(end, s + step)));
                }
            }

            // Newest window first, like Stripe's lists.
            windows.Reverse();
            var items = windows
                .Select(w => new JsonObject
                {
                    ["id"] = SummaryId(meter.Id, customer, w.Start, w.End),
                    ["object"] = "billing.meter_event_summary",
                    ["aggregated_value"] = (double)Aggregate(meter, customer, w.Start, w.End),
                    ["end_time"] = w.End,
                    ["livemode"] = false,
                    ["meter"] = meter.Id,
                    ["start_time"] = w.Start,
                })
                .ToList();
            return StripeBackend.ListOf(items, o => (string)o["id"]!, o => o, p, $"/v1/billing/meters/{meter.Id}/event_summaries");
        }
    }

    private static string SummaryId(string meterId, string customer, long start, long end)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{meterId}|{customer}|{start}|{end}")));
        return "mtrusum_" + Convert.ToHexStringLower(hash.AsSpan(0, 12));
    }

    /// <summary>The meter's aggregation over [start, end) for one customer: formula, event_time_window pre-aggregation, cancellations. Caller holds the lock.</summary>
    public decimal Aggregate(Meter meter, string customer, long start, long end)
    {
        IEnumerable<MeterEventRecord> inRange = _meterEvents.For(meter.Id, customer).Where(e => e.Counts && e.Timestamp >= start && e.Timestamp < end);
        if (meter.EventTimeWindow is { } w)
        {
            // Pre-aggregation: the latest event of each hour/day window wins.
            var size = w == "hour" ? 3600L : 86400L;
            inRange = inRange
                .GroupBy(e => Math.DivRem(e.Timestamp, size, out var r) - (r < 0 ? 1 : 0))
                .Select(g => g.MaxBy(e => (e.Timestamp, e.Sequence))!);
        }

        switch (meter.Formula)
        {
            case "count":
                return inRange.Count();
            case "last":
                var last = inRange.MaxBy(e => (e.Timestamp, e.Sequence));
                return last?.Value ?? 0;
            default:
                decimal sum = 0;
                foreach (var e in inRange)
                {
                    sum += e.Value;
                }

                return sum;
        }
    }

    /// <summary>Inspection: aggregated value for a customer and meter (id or event name) over [start, end).</summary>
    public decimal Total(string customer, string meterIdOrEventName, long start, long end)
    {
        lock (_gate)
        {
            var meter = _meters.GetValueOrDefault(meterIdOrEventName) ?? _metersByEventName.GetValueOrDefault(meterIdOrEventName)
                ?? throw new ArgumentException($"No meter with id or event name '{meterIdOrEventName}'.", nameof(meterIdOrEventName));
            return Aggregate(meter, customer, start, end);
        }
    }

    /// <summary>The per customer·meter concurrency key of a meter-event request, or <see langword="null"/> when it names none.</summary>
    public string? ConcurrencyKey(Params p)
    {
        var eventName = p.Node.Child("event_name")?.Value;
        var payload = p.Node.Child("payload");
        if (eventName is null || payload is null)
        {
            return null;
        }

        string customerKey;
        lock (_gate)
        {
            customerKey = _metersByEventName.TryGetValue(eventName, out var m) ? m.CustomerKey : "stripe_customer_id";
        }

        var customer = payload.Child(customerKey)?.Value;
        return customer is null ? null : string.Concat(eventName, "\n", customer);
    }

    public JsonObject CreateMeterEvent(Params p)
    {
        p.AllowOnly("event_name", "identifier", "payload", "timestamp");
        var eventName = p.Required("event_name", 100);
        var payload = p.Map("payload");
        if (payload is null || payload.Count == 0)
        {
            throw StripeApiException.Missing("payload");
        }

        var identifier = p.Str("identifier", 100);
        if (identifier is { Length: 0 })
        {
            throw StripeApiException.Invalid("identifier must not be empty.", "identifier");
        }

        var now = _now();
        var timestamp = p.Long("timestamp") ?? now;
        if (timestamp < now - ThirtyFiveDays)
        {
            throw new StripeApiException(400, "invalid_request_error", "timestamp_too_far_in_past",
                "The timestamp for this event is too far in the past. Timestamps must be within the past 35 days.", "timestamp");
        }

        var inFuture = timestamp > now + FiveMinutes;
        if (inFuture && _runtime.Options.RejectFutureTimestampsSynchronously)
        {
            throw new StripeApiException(400, "invalid_request_error", "timestamp_in_future",
                "The timestamp for this event is too far in the future. Timestamps must be at most 5 minutes ahead.", "timestamp");
        }

        Meter? meter;
        lock (_gate)
        {
            meter = _metersByEventName.GetValueOrDefault(eventName);
        }

        var customerKey = meter?.CustomerKey ?? "stripe_customer_id";
        var valueKey = meter?.ValueKey ?? "value";
        var hasValue = payload.TryGetValue(valueKey, out var rawValue);
        long value = 1;
        if (hasValue)
        {
            value = ParseValue(rawValue!, valueKey);
        }

        var customer = payload.GetValueOrDefault(customerKey);
        var dedupWindow = (long)_runtime.Options.IdentifierDedupWindow.TotalSeconds;

        lock (_gate)
        {
            identifier ??= StripeBackend.NewId("evt_id_", 20);
            if (_meterEvents.SeenSince(identifier, now - dedupWindow))
            {
                var ex = new StripeApiException(400, "invalid_request_error", null,
                    $"An event already exists with identifier {identifier}.", "identifier", "duplicate_identifier");
                ex.Headers.Add(new("Stripe-Should-Retry", "false"));
                throw ex;
            }

            AddMeterEventLocked(identifier, eventName, meter, customer, value, hasValue, timestamp, inFuture, now, payload, null);
        }

        var payloadJson = new JsonObject();
        foreach (var (k, v) in payload)
        {
            payloadJson[k] = v;
        }

        return new JsonObject
        {
            ["object"] = "billing.meter_event",
            ["created"] = now,
            ["event_name"] = eventName,
            ["identifier"] = identifier,
            ["livemode"] = false,
            ["payload"] = payloadJson,
            ["timestamp"] = timestamp,
        };
    }

    /// <summary>
    /// Stores one accepted meter event (v1 or v2 stream) and reports its asynchronous error, if any, as a thin event.
    /// <paramref name="knownError"/> is an error the caller already found (the stream's value and timestamp rules,
    /// synchronous in v1). Caller holds the lock and has checked the identifier is new.
    /// </summary>
    private void AddMeterEventLocked(
        string identifier, string eventName, Meter? meter, string? customer, long value, bool hasValue, long timestamp, bool inFuture, long now,
        Dictionary<string, string> payload, string? knownError)
    {
        var error = knownError ?? (meter is null ? "no_meter"
            : meter.Status != "active" ? "archived_meter"
            : string.IsNullOrEmpty(customer) ? "meter_event_no_customer_defined"
            : !_customers.TryGet(customer, out var c) || c.Deleted ? "meter_event_customer_not_found"
            : !hasValue && meter.Formula != "count" ? "meter_event_invalid_value"
            : inFuture ? "timestamp_in_future"
            : null);

        var record = new MeterEventRecord
        {
            Identifier = identifier,
            EventName = eventName,
            MeterId = meter?.Id,
            CustomerId = customer,
            Value = value,
            Timestamp = timestamp,
            Received = now,
            Payload = payload,
            ErrorCode = error,
            Sequence = _meterEvents.NextSequence(),
        };
        _meterEvents.Add(record);

        if (error is not null)
        {
            ReportAsyncError(record, meter, error, now);
        }
    }

    /// <summary>Synchronous value rules: an integer string, at most 15 significant digits.</summary>
    private static long ParseValue(string raw, string valueKey)
    {
        var param = $"payload[{valueKey}]";
        var digits = raw.StartsWith('-') || raw.StartsWith('+') ? raw.AsSpan(1) : raw.AsSpan();
        if (digits.Length == 0 || digits.ContainsAnyExceptInRange('0', '9'))
        {
            throw new StripeApiException(400, "invalid_request_error", "meter_event_invalid_value",
                $"Invalid value '{raw}' for {param}: the value must be a whole number.", param);
        }

        var significant = digits.TrimStart('0');
        if (significant.Length > 15)
        {
            throw new StripeApiException(400, "invalid_request_error", "meter_event_value_too_many_digits",
                $"Invalid value '{raw}' for {param}: the value has more than 15 significant digits.", param);
        }

        var v = significant.Length == 0 ? 0 : long.Parse(significant, System.Globalization.CultureInfo.InvariantCulture);
        return raw.StartsWith('-') ? -v : v;
    }

    private void ReportAsyncError(MeterEventRecord record, Meter? meter, string code, long now)
    {
        var message = code switch
        {
            "no_meter" => $"No active meter was found for event_name '{record.EventName}'.",
            "archived_meter" => $"The meter {meter?.Id} for event_name '{record.EventName}' is inactive.",
            "meter_event_no_customer_defined" => $"The payload does not contain the customer key '{meter?.CustomerKey}'.",
            "meter_event_customer_not_found" => $"No customer '{record.CustomerId}' was found.",
            "meter_event_invalid_value" => $"The payload does not contain a valid value under '{meter?.ValueKey}'.",
            "timestamp_in_future" => "The timestamp is more than 5 minutes in the future.",
            "timestamp_too_far_in_past" => "The timestamp is more than 35 days in the past.",
            "meter_event_value_too_many_digits" => $"The value under '{meter?.ValueKey}' has more than 15 significant digits.",
            _ => code,
        };
        var data = new JsonObject
        {
            ["developer_message_summary"] = message,
            ["reason"] = new JsonObject
            {
                ["error_count"] = 1,
                ["error_types"] = new JsonArray(new JsonObject
                {
                    ["code"] = code,
                    ["error_count"] = 1,
                    ["sample_errors"] = new JsonArray(new JsonObject
                    {
                        ["error_message"] = message,
                        ["request"] = new JsonObject { ["identifier"] = record.Identifier },
                    }),
                }),
            },
            ["validation_start"] = StripeBackend.UnixToIso(now),
            ["validation_end"] = StripeBackend.UnixToIso(now),
        };
        var type = meter is null ? "v1.billing.meter.no_meter_found" : "v1.billing.meter.error_report_triggered";
        _webhooks.EmitThin(type, meter, data, now);
    }

    public JsonObject CreateAdjustment(Params p)
    {
        p.AllowOnly("event_name", "type", "cancel");
        var eventName = p.Required("event_name", 100);
        var type = p.Enum("type", "cancel");
        if (string.IsNullOrEmpty(type))
        {
            throw StripeApiException.Missing("type");
        }

        var cancel = p.Obj("cancel") ?? throw StripeApiException.Missing("cancel");
        cancel.AllowOnly("identifier");
        var identifier = cancel.Required("identifier", 100);
        var now = _now();
        lock (_gate)
        {
            if (_meterEvents.Find(identifier) is not { } record || record.EventName != eventName)
            {
                throw new StripeApiException(400, "invalid_request_error", "resource_missing",
                    $"No meter event with identifier {identifier} and event_name {eventName} was found.", "cancel[identifier]");
            }

            if (record.Received < now - AdjustmentWindow)
            {
                throw new StripeApiException(400, "invalid_request_error", null,
                    $"The meter event with identifier {identifier} was received more than 24 hours ago and can no longer be cancelled. Send a negative-value event instead.",
                    "cancel[identifier]", "adjustment_too_late");
            }

            record.Canceled = true;
        }

        return new JsonObject
        {
            ["object"] = "billing.meter_event_adjustment",
            ["cancel"] = new JsonObject { ["identifier"] = identifier },
            ["event_name"] = eventName,
            ["livemode"] = false,
            ["status"] = "pending",
            ["type"] = "cancel",
        };
    }

    /// <summary>Inspection: accepted meter events, optionally filtered.</summary>
    public IReadOnlyList<AcceptedMeterEvent> AcceptedEvents(string? customer, string? eventName)
    {
        lock (_gate)
        {
            return _meterEvents.All
                .Where(e => (customer is null || e.CustomerId == customer) && (eventName is null || e.EventName == eventName))
                .Select(e => new AcceptedMeterEvent(
                    e.Identifier,
                    e.EventName,
                    e.CustomerId,
                    e.Value,
                    DateTimeOffset.FromUnixTimeSeconds(e.Timestamp),
                    DateTimeOffset.FromUnixTimeSeconds(e.Received),
                    e.MeterId,
                    e.ErrorCode,
                    e.Canceled))
                .ToList();
        }
    }

    /// <summary><c>POST /v2/billing/meter_event_session</c>: a token valid for <see cref="StripeEmulatorOptions.MeterEventSessionLifetime"/>.</summary>
    public JsonObject CreateSession(string apiKey)
    {
        var now = _runtime.Clock.GetUtcNow();
        var session = new MeterEventSessionRecord
        {
            Id = StripeBackend.NewId("mes_"),
            Token = StripeBackend.NewSecret("mes_tok_test_", 40),
            ApiKey = apiKey,
            Created = now.ToUnixTimeSeconds(),
            ExpiresAt = (now + _runtime.Options.MeterEventSessionLifetime).ToUnixTimeSeconds(),
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
            ["created"] = StripeBackend.UnixToIso(session.Created),
            ["expires_at"] = StripeBackend.UnixToIso(session.ExpiresAt),
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

        if (_now() >= session.ExpiresAt)
        {
            throw new StripeApiException(401, "temporary_session_expired", "billing_meter_event_session_expired",
                "The meter event session has expired. Create a new session with POST /v2/billing/meter_event_session.",
                null, "billing_meter_event_session_expired");
        }

        return session;
    }

    /// <summary>Inspection: expires every open session now (their next stream request gets <c>billing_meter_event_session_expired</c>).</summary>
    public int ExpireSessions()
    {
        var now = _now();
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
        var now = _now();
        var dedupWindow = (long)_runtime.Options.IdentifierDedupWindow.TotalSeconds;
        var recorded = 0;
        var duplicates = 0;
        lock (_gate)
        {
            foreach (var e in events)
            {
                var identifier = e.Identifier ?? StripeBackend.NewId("evt_id_", 20);
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
