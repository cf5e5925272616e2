using System.Text.Json;
using System.Text.Json.Serialization;

namespace UsageBilling.StripeEmulator.Admin;

internal sealed record FaultCreated(string Id);

internal sealed record RateLimitRequest(double? RequestsPerSecond);

internal sealed record ConcurrencyRequest(bool Enforce);

internal sealed record AdvanceClockRequest(double Seconds);

internal sealed record SetClockRequest(long Unix);

internal sealed record ClockResponse(DateTimeOffset Now, long Unix);

internal sealed record TotalResponse(decimal Value);

internal sealed record ExpiredSessionsResponse(int Expired);

internal sealed record AddWebhookEndpointRequest(string Url, IReadOnlyList<string>? EnabledEvents);

internal static class AdminJson
{
    /// <summary>snake_case JSON, enums as snake_case strings, shared by the admin endpoints and <see cref="EmulatorAdminClient"/>.</summary>
    public static readonly JsonSerializerOptions Options = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions o)
    {
        o.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        o.DictionaryKeyPolicy = null;
        o.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
        return o;
    }
}
