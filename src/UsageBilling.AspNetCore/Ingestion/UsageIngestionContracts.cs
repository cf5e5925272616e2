using System.Text.Json.Serialization;

namespace UsageBilling;

/// <summary>The body of <c>POST /api/v1/usage</c>.</summary>
internal sealed class UsageIngestionRequest
{
    [JsonPropertyName("events")]
    public List<UsageIngestionItem?>? Events { get; set; }
}

/// <summary>One event of an ingestion request.</summary>
internal sealed class UsageIngestionItem
{
    [JsonPropertyName("account_id")]
    public Guid? AccountId { get; set; }

    [JsonPropertyName("customer_id")]
    public string? CustomerId { get; set; }

    [JsonPropertyName("meter")]
    public string? Meter { get; set; }

    [JsonPropertyName("quantity")]
    public long? Quantity { get; set; }

    [JsonPropertyName("idempotency_key")]
    public string? IdempotencyKey { get; set; }

    [JsonPropertyName("occurred_at")]
    public DateTimeOffset? OccurredAt { get; set; }
}

/// <summary>The answer: one result per event, in order, and the counts.</summary>
internal sealed record UsageIngestionResponse(
    [property: JsonPropertyName("results")] IReadOnlyList<UsageIngestionResult> Results,
    [property: JsonPropertyName("recorded")] int Recorded,
    [property: JsonPropertyName("duplicates")] int Duplicates,
    [property: JsonPropertyName("rejected")] int Rejected);

/// <summary>What happened to one event: <c>recorded</c>, <c>duplicate</c> (its idempotency key was recorded before; not an error) or <c>rejected</c>.</summary>
internal sealed record UsageIngestionResult(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("event_id")] Guid? EventId,
    [property: JsonPropertyName("code")][property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Code,
    [property: JsonPropertyName("reason")][property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Reason);
