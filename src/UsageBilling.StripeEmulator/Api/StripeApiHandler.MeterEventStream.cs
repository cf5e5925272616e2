using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>
/// The v2 high-throughput meter events: <c>POST /v2/billing/meter_event_session</c> (secret key, on the API host) and
/// <c>POST /v2/billing/meter_event_stream</c> (session token, on the meter-events host — here the same root). Both take
/// JSON bodies. Faults apply as to v1 (the filters in <see cref="StripeApiRoutes"/>); the stream has its own rate limit,
/// no per customer·meter concurrency rule and no Idempotency-Key replay (a resent event is dropped by its identifier,
/// which gives the same outcome).
/// </summary>
internal sealed partial class StripeApiHandler
{
    /// <summary>Stripe's cap on events in one stream request.</summary>
    public const int MaxStreamEvents = 100;

    /// <summary>The two v2 meter routes; any other path starting with <see cref="V2MeterPathPrefix"/> is a 404 before authentication.</summary>
    public const string V2MeterPathPrefix = "/v2/billing/meter_event_s";
    public const string SessionPath = "/v2/billing/meter_event_session";
    public const string StreamPath = "/v2/billing/meter_event_stream";

    private static readonly byte[] EmptyObject = "{}"u8.ToArray();

    /// <summary><c>POST /v2/billing/meter_event_session</c>: a session token for the stream (an empty JSON body).</summary>
    public async Task<ApiResponse> CreateMeterEventSessionAsync(HttpContext ctx)
    {
        var call = StripeCall.Of(ctx);
        var body = await ReadJsonAsync(ctx);
        await DelayAsync(call, ctx);
        if (body is not null && body.Count > 0)
        {
            throw StripeApiException.Unknown(body.First().Key);
        }

        return Ok(Backend.Meters.CreateSession(call.ApiKey));
    }

    /// <summary><c>POST /v2/billing/meter_event_stream</c>: up to 100 events, shape checked now, meaning asynchronously.</summary>
    public async Task<ApiResponse> StreamMeterEventsAsync(HttpContext ctx)
    {
        var call = StripeCall.Of(ctx);
        var body = await ReadJsonAsync(ctx);
        await DelayAsync(call, ctx);
        var events = ParseStreamEvents(body);
        foreach (var e in events)
        {
            if (e.Identifier is { } identifier)
            {
                Runtime.CountMeterEventRequest(identifier, call.ApiKey);
            }
        }

        var (_, duplicates) = Backend.Meters.RecordStreamEvents(events);
        for (var i = 0; i < duplicates; i++)
        {
            Runtime.Reject("duplicate_identifier_dropped");
        }

        return new ApiResponse(200, EmptyObject, []);
    }

    /// <summary>Any other method or path under <see cref="V2MeterPathPrefix"/>.</summary>
    public static ApiResponse UnrecognizedV2Meter(HttpContext ctx) =>
        throw new StripeApiException(404, "invalid_request_error", null,
            $"Unrecognized request URL ({ctx.Request.Method}: {ctx.Request.Path.Value}).", null, "unrecognized_url");

    private static async Task DelayAsync(StripeCall call, HttpContext ctx)
    {
        if (call.Fault is { Kind: FaultKind.Delay, DelayMilliseconds: > 0 })
        {
            await Task.Delay(call.Fault.DelayMilliseconds, ctx.RequestAborted);
        }
    }

    internal static string BearerToken(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : string.Empty;
        if (token.Length == 0)
        {
            throw new StripeApiException(401, "invalid_request_error", null,
                "You did not provide a meter event session token. Send it as 'Authorization: Bearer <authentication_token>'.", null, "unauthorized");
        }

        return token;
    }

    /// <summary>The JSON object body (v2 takes JSON, never form data); <see langword="null"/> when the body is empty.</summary>
    private async Task<JsonObject?> ReadJsonAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        var max = Runtime.Options.MaxRequestBodyBytes;
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, ctx.RequestAborted)) > 0)
        {
            // Past the cap the rest is drained, not stored, so the client gets the 400 instead of a reset.
            if (buffer.Length <= max)
            {
                buffer.Write(chunk, 0, read);
            }
        }

        if (buffer.Length > max)
        {
            throw new StripeApiException(400, "invalid_request_error", "request_body_too_large",
                $"The request body is larger than {max} bytes.", null, "request_body_too_large");
        }

        if (buffer.Length == 0)
        {
            return null;
        }

        var contentType = request.ContentType ?? string.Empty;
        if (!contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            throw StripeApiException.Invalid($"Invalid request: v2 endpoints take application/json bodies, not '{contentType}'.", null, "invalid_content_type");
        }

        try
        {
            return JsonNode.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length).Span) as JsonObject
                ?? throw StripeApiException.Invalid("Invalid request body: expected a JSON object.");
        }
        catch (JsonException ex)
        {
            throw StripeApiException.Invalid($"Invalid request body: not valid JSON ({ex.Message}).");
        }
    }

    /// <summary>
    /// The request's shape, checked before anything is recorded (a bad request records nothing): <c>events</c> holds
    /// 1–100 objects, each with a string <c>event_name</c>, an object <c>payload</c> of strings, and optionally a
    /// string <c>identifier</c> (≤ 100) and an ISO 8601 <c>timestamp</c>. What the values mean is checked
    /// asynchronously (<see cref="MeterStore.RecordStreamEvents"/>).
    /// </summary>
    private static List<StreamMeterEvent> ParseStreamEvents(JsonObject? body)
    {
        if (body is null || !body.TryGetPropertyValue("events", out var eventsNode) || eventsNode is null)
        {
            throw StripeApiException.Missing("events");
        }

        foreach (var (name, _) in body)
        {
            if (name != "events")
            {
                throw StripeApiException.Unknown(name);
            }
        }

        if (eventsNode is not JsonArray array)
        {
            throw StripeApiException.Invalid("events must be an array.", "events", "parameter_invalid_array");
        }

        if (array.Count is 0 or > MaxStreamEvents)
        {
            throw StripeApiException.Invalid(
                $"events must hold between 1 and {MaxStreamEvents} events; this request has {array.Count}.", "events", "too_many_events");
        }

        var events = new List<StreamMeterEvent>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            var param = $"events[{i}]";
            if (array[i] is not JsonObject e)
            {
                throw StripeApiException.Invalid($"{param} must be an object.", param);
            }

            string? identifier = null;
            string? eventName = null;
            long? timestamp = null;
            Dictionary<string, string>? payload = null;
            foreach (var (name, value) in e)
            {
                switch (name)
                {
                    case "identifier":
                        identifier = StringField(value, $"{param}.identifier");
                        if (identifier.Length is 0 or > 100)
                        {
                            throw StripeApiException.Invalid($"{param}.identifier must be 1 to 100 characters.", $"{param}.identifier");
                        }

                        break;
                    case "event_name":
                        eventName = StringField(value, $"{param}.event_name");
                        if (eventName.Length is 0 or > 100)
                        {
                            throw StripeApiException.Invalid($"{param}.event_name must be 1 to 100 characters.", $"{param}.event_name");
                        }

                        break;
                    case "timestamp":
                        timestamp = MeterStore.ParseIsoTimestamp(StringField(value, $"{param}.timestamp"))
                            ?? throw StripeApiException.Invalid($"{param}.timestamp must be an ISO 8601 date-time.", $"{param}.timestamp");
                        break;
                    case "payload":
                        if (value is not JsonObject map)
                        {
                            throw StripeApiException.Invalid($"{param}.payload must be an object of strings.", $"{param}.payload");
                        }

                        payload = new Dictionary<string, string>(StringComparer.Ordinal);
                        foreach (var (k, v) in map)
                        {
                            payload[k] = StringField(v, $"{param}.payload.{k}");
                        }

                        break;
                    default:
                        throw StripeApiException.Unknown($"{param}.{name}");
                }
            }

            if (eventName is null)
            {
                throw StripeApiException.Missing($"{param}.event_name");
            }

            if (payload is null || payload.Count == 0)
            {
                throw StripeApiException.Missing($"{param}.payload");
            }

            events.Add(new StreamMeterEvent(identifier, eventName, timestamp, payload));
        }

        return events;
    }

    private static string StringField(JsonNode? node, string param) =>
        node is JsonValue v && v.TryGetValue<string>(out var s)
            ? s
            : throw StripeApiException.Invalid($"{param} must be a string.", param);

    internal static StripeApiException RateLimitedV2(string reason, string rejection) =>
        new(429, "rate_limit", "rate_limit", RateLimitMessage, null, rejection)
        {
            Headers = { new("Stripe-Rate-Limited-Reason", reason) },
        };
}
