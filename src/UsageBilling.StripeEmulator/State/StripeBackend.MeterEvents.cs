using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

internal sealed partial class StripeBackend
{
    private const long ThirtyFiveDays = 35L * 86400;
    private const long FiveMinutes = 300;
    private const long AdjustmentWindow = 86400;

    /// <summary>The per customer·meter concurrency key of a meter-event request, or <see langword="null"/> when it names none.</summary>
    public string? MeterConcurrencyKey(Params p)
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

        var now = Now;
        var timestamp = p.Long("timestamp") ?? now;
        if (timestamp < now - ThirtyFiveDays)
        {
            throw new StripeApiException(400, "invalid_request_error", "timestamp_too_far_in_past",
                "The timestamp for this event is too far in the past. Timestamps must be within the past 35 days.", "timestamp");
        }

        var inFuture = timestamp > now + FiveMinutes;
        if (inFuture && Runtime.Options.RejectFutureTimestampsSynchronously)
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
        var dedupWindow = (long)Runtime.Options.IdentifierDedupWindow.TotalSeconds;

        lock (_gate)
        {
            identifier ??= NewId("evt_id_", 20);
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
            : !Customers.TryGet(customer, out var c) || c.Deleted ? "meter_event_customer_not_found"
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
            ["validation_start"] = UnixToIso(now),
            ["validation_end"] = UnixToIso(now),
        };
        var type = meter is null ? "v1.billing.meter.no_meter_found" : "v1.billing.meter.error_report_triggered";
        EmitThin(type, meter, data, now);
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
        var now = Now;
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
}
