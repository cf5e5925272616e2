using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;

namespace UsageBilling.StripeEmulator.State;

internal sealed partial class StripeBackend
{
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
            ["api_version"] = ApiVersion,
            ["created"] = e.Created,
            ["description"] = e.Description,
            ["enabled_events"] = events,
            ["livemode"] = false,
            ["metadata"] = Metadata(e.Metadata),
            ["status"] = e.Status,
            ["url"] = e.Url,
        };
        if (withSecret)
        {
            o["secret"] = e.Secret;
        }

        return o;
    }

    public JsonObject CreateWebhookEndpoint(Params p)
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
            MergeMetadata(e.Metadata, p);
            return Render(e, withSecret: true);
        }
    }

    public WebhookEndpointInfo AddEndpoint(Uri url, IReadOnlyList<string>? enabledEvents, string? description = null)
    {
        var e = new WebhookEndpoint
        {
            Id = NewId("we_"),
            Created = Now,
            Url = url.ToString(),
            Secret = NewSecret("whsec_", 32),
            EnabledEvents = enabledEvents is { Count: > 0 } ? [.. enabledEvents] : ["*"],
            Description = description,
        };
        lock (_gate)
        {
            _endpoints.Add(e);
        }

        return new WebhookEndpointInfo(e.Id, url, e.Secret, e.EnabledEvents);
    }

    public JsonObject GetWebhookEndpoint(string id, Params p)
    {
        p.AllowOnly();
        lock (_gate)
        {
            return _endpoints.TryGetValue(id, out var e) ? Render(e, false) : throw StripeApiException.NoSuch("webhook_endpoint", id);
        }
    }

    public JsonObject UpdateWebhookEndpoint(string id, Params p)
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
                e.Description = NullIfEmpty(p.Str("description"));
            }

            MergeMetadata(e.Metadata, p);
            return Render(e, false);
        }
    }

    public JsonObject DeleteWebhookEndpoint(string id, Params p)
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

    public JsonObject ListWebhookEndpoints(Params p)
    {
        p.AllowOnly("limit", "starting_after", "ending_before");
        lock (_gate)
        {
            var items = NewestFirst(_endpoints, _ => true);
            return ListOf(items, e => e.Id, e => Render(e, false), p, "/v1/webhook_endpoints");
        }
    }
}
