using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

internal sealed partial class StripeBackend
{
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

    public JsonObject CreateMeter(Params p)
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
        var now = Now;
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
                Id = NewId("mtr_"),
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

    public JsonObject GetMeter(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return Render(MeterOrThrow(id));
        }
    }

    public JsonObject UpdateMeter(string id, Params p)
    {
        p.AllowOnly("display_name");
        var name = p.Str("display_name", 250);
        lock (_gate)
        {
            var m = MeterOrThrow(id);
            if (!string.IsNullOrEmpty(name))
            {
                m.DisplayName = name;
                m.Updated = Now;
            }

            return Render(m);
        }
    }

    public JsonObject SetMeterStatus(string id, Params p, bool active)
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

            var now = Now;
            m.Status = wanted;
            m.DeactivatedAt = active ? null : now;
            m.Updated = now;
            return Render(m);
        }
    }

    public JsonObject ListMeters(Params p)
    {
        p.AllowOnly("status", "limit", "starting_after", "ending_before");
        var status = p.Enum("status", "active", "inactive");
        lock (_gate)
        {
            var items = NewestFirst(_meters, m => string.IsNullOrEmpty(status) || m.Status == status);
            return ListOf(items, m => m.Id, m => Render(m), p, "/v1/billing/meters");
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
            return ListOf(items, o => (string)o["id"]!, o => o, p, $"/v1/billing/meters/{meter.Id}/event_summaries");
        }
    }

    private static string SummaryId(string meterId, string customer, long start, long end)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{meterId}|{customer}|{start}|{end}")));
        return "mtrusum_" + Convert.ToHexStringLower(hash.AsSpan(0, 12));
    }

    /// <summary>The meter's aggregation over [start, end) for one customer: formula, event_time_window pre-aggregation, cancellations. Caller holds the lock.</summary>
    private decimal Aggregate(Meter meter, string customer, long start, long end)
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
}
