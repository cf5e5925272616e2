using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;
using UsageBilling.StripeEmulator.Webhooks;

namespace UsageBilling.StripeEmulator.State;

/// <summary>
/// The webhooks store: webhook endpoints (<c>/v1/webhook_endpoints</c>, the admin API's endpoints) and the event log
/// (<c>/v1/events</c> snapshot events, <c>/v2/core/events</c> thin events), and queuing each event's deliveries.
/// </summary>
/// <remarks>
/// Locking: like every store it guards its tables with <see cref="StripeBackend"/>'s one lock, passed in, never a
/// lock of its own — an operation spanning resources (an invoice finalized emits <c>invoice.finalized</c>) runs
/// under that one lock from start to end, so it sees and leaves one consistent state and no two locks can be taken
/// in opposite orders. <see cref="Emit"/> and <see cref="EmitThin"/> expect the caller to hold it (the lock is
/// re-entrant, so the other members take it themselves).
/// </remarks>
internal sealed class WebhookStore(Lock gate, WebhookDispatcher dispatcher, Func<long> now)
{
    private readonly Lock _gate = gate;
    private readonly WebhookDispatcher _dispatcher = dispatcher;
    private readonly Func<long> _now = now;
    private readonly Table<WebhookEndpoint> _endpoints = new(x => x.Id);
    private readonly Table<EventRecord> _events = new(x => x.Id);

    /// <summary>The endpoints in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<WebhookEndpoint> Endpoints => _endpoints;

    /// <summary>The events in creation order (the state file). Caller holds the lock.</summary>
    public IEnumerable<EventRecord> Events => _events;

    /// <summary>Replaces the contents with the state file's. Caller holds the lock.</summary>
    public void Load(IEnumerable<WebhookEndpoint> endpoints, IEnumerable<EventRecord> events)
    {
        _endpoints.Load(endpoints);
        _events.Load(events);
    }

    /// <summary>Forgets every endpoint and event. Caller holds the lock.</summary>
    public void Clear()
    {
        _endpoints.Clear();
        _events.Clear();
    }

    private static JsonObject Render(WebhookEndpoint e, bool withSecret)
    {
        var events = new JsonArray();
        foreach (var t in e.EnabledEvents)
        {
            events.Add(t);
        }

        var o = new JsonObject
        {
            ["id"] = e.Id,
            ["object"] = "webhook_endpoint",
            ["api_version"] = StripeBackend.ApiVersion,
            ["created"] = e.Created,
            ["description"] = e.Description,
            ["enabled_events"] = events,
            ["livemode"] = false,
            ["metadata"] = StripeBackend.Metadata(e.Metadata),
            ["status"] = e.Status,
            ["url"] = e.Url,
        };
        if (withSecret)
        {
            o["secret"] = e.Secret;
        }

        return o;
    }

    public JsonObject CreateEndpoint(Params p)
    {
        p.AllowOnly("url", "enabled_events", "description", "metadata", "api_version", "connect", "disabled");
        var url = p.Required("url");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
        {
            throw StripeApiException.Invalid($"Invalid URL: {url}", "url", "url_invalid");
        }

        var events = p.StrArray("enabled_events");
        if (events is null || events.Count == 0)
        {
            throw StripeApiException.Missing("enabled_events");
        }

        var info = AddEndpoint(uri, events, p.Str("description"));
        lock (_gate)
        {
            var e = _endpoints[info.Id];
            StripeBackend.MergeMetadata(e.Metadata, p);
            return Render(e, withSecret: true);
        }
    }

    public WebhookEndpointInfo AddEndpoint(Uri url, IReadOnlyList<string>? enabledEvents, string? description = null)
    {
        var e = new WebhookEndpoint
        {
            Id = StripeBackend.NewId("we_"),
            Created = _now(),
            Url = url.ToString(),
            Secret = StripeBackend.NewSecret("whsec_", 32),
            EnabledEvents = enabledEvents is { Count: > 0 } ? [.. enabledEvents] : ["*"],
            Description = description,
        };
        lock (_gate)
        {
            _endpoints.Add(e);
        }

        return new WebhookEndpointInfo(e.Id, url, e.Secret, e.EnabledEvents);
    }

    public JsonObject GetEndpoint(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return _endpoints.TryGetValue(id, out var e) ? Render(e, false) : throw StripeApiException.NoSuch("webhook_endpoint", id);
        }
    }

    public JsonObject UpdateEndpoint(string id, Params p)
    {
        p.AllowOnly("url", "enabled_events", "description", "metadata", "disabled");
        lock (_gate)
        {
            var e = _endpoints.TryGetValue(id, out var x) ? x : throw StripeApiException.NoSuch("webhook_endpoint", id);
            if (p.Str("url") is { Length: > 0 } url)
            {
                e.Url = Uri.TryCreate(url, UriKind.Absolute, out _) ? url : throw StripeApiException.Invalid($"Invalid URL: {url}", "url", "url_invalid");
            }

            if (p.StrArray("enabled_events") is { Count: > 0 } events)
            {
                e.EnabledEvents = events;
            }

            if (p.Bool("disabled") is { } disabled)
            {
                e.Status = disabled ? "disabled" : "enabled";
            }

            if (p.Has("description"))
            {
                e.Description = StripeBackend.NullIfEmpty(p.Str("description"));
            }

            StripeBackend.MergeMetadata(e.Metadata, p);
            return Render(e, false);
        }
    }

    public JsonObject DeleteEndpoint(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            if (!_endpoints.Remove(id, out _))
            {
                throw StripeApiException.NoSuch("webhook_endpoint", id);
            }

            return new JsonObject { ["id"] = id, ["object"] = "webhook_endpoint", ["deleted"] = true };
        }
    }

    public JsonObject ListEndpoints(Params p)
    {
        p.AllowOnly("limit", "starting_after", "ending_before");
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_endpoints, _ => true);
            return StripeBackend.ListOf(items, e => e.Id, e => Render(e, false), p, "/v1/webhook_endpoints");
        }
    }

    /// <summary>Whether an enabled endpoint listens for <paramref name="type"/> (an event emitted now would be delivered). Caller holds the lock.</summary>
    public bool AnyEndpointWants(string type) => _endpoints.Any(e => e.Wants(type));

    /// <summary>Records a snapshot event (<c>object: event</c>) and queues deliveries. Caller holds the lock.</summary>
    /// <returns>The event's id and how many deliveries were queued.</returns>
    public (string Id, int Deliveries) Emit(string type, JsonObject dataObject, long created, JsonObject? previousAttributes = null)
    {
        var id = StripeBackend.NewId("evt_");
        var data = new JsonObject { ["object"] = dataObject };
        if (previousAttributes is not null)
        {
            data["previous_attributes"] = previousAttributes;
        }

        var targets = _endpoints.Where(e => e.Wants(type)).ToList();
        var body = new JsonObject
        {
            ["id"] = id,
            ["object"] = "event",
            ["api_version"] = StripeBackend.ApiVersion,
            ["created"] = created,
            ["data"] = data,
            ["livemode"] = false,
            ["pending_webhooks"] = targets.Count,
            ["request"] = new JsonObject { ["id"] = null, ["idempotency_key"] = null },
            ["type"] = type,
        };
        var record = new EventRecord { Id = id, Type = type, Created = created, Body = body };
        _events.Add(record);
        _dispatcher.Enqueue(targets, record);
        return (id, targets.Count);
    }

    /// <summary>Records a thin (v2) event notification and queues deliveries. Caller holds the lock.</summary>
    public void EmitThin(string type, Meter? related, JsonObject data, long created)
    {
        var id = StripeBackend.NewId("evt_");
        var body = new JsonObject
        {
            ["id"] = id,
            ["object"] = "v2.core.event",
            ["type"] = type,
            ["created"] = StripeBackend.UnixToIso(created),
            ["livemode"] = false,
            ["context"] = null,
        };
        if (related is not null)
        {
            body["related_object"] = new JsonObject
            {
                ["id"] = related.Id,
                ["type"] = "billing.meter",
                ["url"] = $"/v1/billing/meters/{related.Id}",
            };
        }

        var full = (JsonObject)body.DeepClone();
        full["data"] = data;
        full["reason"] = null;
        var record = new EventRecord { Id = id, Type = type, Created = created, Body = body, FullV2 = full, Thin = true };
        _events.Add(record);
        _dispatcher.Enqueue([.. _endpoints.Where(e => e.Wants(type))], record);
    }

    public JsonObject GetEvent(string id)
    {
        lock (_gate)
        {
            return _events.TryGetValue(id, out var e) && !e.Thin
                ? (JsonObject)e.Body.DeepClone()
                : throw StripeApiException.NoSuch("event", id);
        }
    }

    public JsonObject GetV2Event(string id)
    {
        lock (_gate)
        {
            return _events.TryGetValue(id, out var e) && e.Thin
                ? (JsonObject)e.FullV2!.DeepClone()
                : throw StripeApiException.NoSuch("event", id);
        }
    }

    public JsonObject ListEvents(Params p)
    {
        p.AllowOnly("limit", "starting_after", "ending_before", "type", "created");
        var type = p.Str("type");
        lock (_gate)
        {
            var items = StripeBackend.NewestFirst(_events, e => !e.Thin && (string.IsNullOrEmpty(type) || e.Type == type));
            return StripeBackend.ListOf(items, e => e.Id, e => e.Body.DeepClone(), p, "/v1/events");
        }
    }
}
