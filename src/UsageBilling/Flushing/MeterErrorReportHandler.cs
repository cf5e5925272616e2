using System.Text.Json;

namespace UsageBilling;

/// <summary>
/// Applies Stripe's asynchronous meter validation results (thin events
/// <c>v1.billing.meter.error_report_triggered</c> and <c>v1.billing.meter.no_meter_found</c>): the
/// reports named by the sample errors' identifiers become dead with Stripe's code and message.
/// The app's webhook endpoint calls it after verifying the signature.
/// </summary>
/// <param name="store">The flush store.</param>
internal sealed class MeterErrorReportHandler(IUsageFlushStore store)
{
    /// <summary>The thin event types this handler understands.</summary>
    public static IReadOnlySet<string> EventTypes { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "v1.billing.meter.error_report_triggered",
        "v1.billing.meter.no_meter_found",
    };

    /// <summary>Marks the reports a meter error report names as dead.</summary>
    /// <param name="eventJson">The event JSON as delivered (with its <c>data</c>), or the fetched event.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>How many reports changed.</returns>
    public async Task<int> HandleAsync(string eventJson, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(eventJson);
        var changed = 0;
        foreach (var (reason, ids) in Parse(eventJson))
        {
            changed += await store.MarkDeadAsync(ids, reason, cancellationToken).ConfigureAwait(false);
        }

        return changed;
    }

    /// <summary>Extracts (reason, report ids) pairs from a meter error report; identifiers that are not ours (not Guids) are skipped.</summary>
    /// <param name="eventJson">The event JSON.</param>
    /// <returns>One entry per error type.</returns>
    public static IReadOnlyList<(string Reason, IReadOnlyList<Guid> ReportIds)> Parse(string eventJson)
    {
        using var document = JsonDocument.Parse(eventJson);
        var root = document.RootElement;
        var data = root.TryGetProperty("data", out var d) ? d : root;
        if (!data.TryGetProperty("reason", out var reason) || !reason.TryGetProperty("error_types", out var types) || types.ValueKind != JsonValueKind.Array)
        {
            return [];
        }

        var result = new List<(string, IReadOnlyList<Guid>)>();
        foreach (var type in types.EnumerateArray())
        {
            var code = type.TryGetProperty("code", out var c) ? c.GetString() : "unknown";
            var ids = new List<Guid>();
            string? message = null;
            if (type.TryGetProperty("sample_errors", out var samples) && samples.ValueKind == JsonValueKind.Array)
            {
                foreach (var sample in samples.EnumerateArray())
                {
                    message ??= sample.TryGetProperty("error_message", out var m) ? m.GetString() : null;
                    if (sample.TryGetProperty("request", out var request) && request.TryGetProperty("identifier", out var identifier)
                        && Guid.TryParse(identifier.GetString(), out var id))
                    {
                        ids.Add(id);
                    }
                }
            }

            if (ids.Count > 0)
            {
                result.Add(($"stripe_async_error {code}: {message ?? "rejected by Stripe after acceptance"}", ids));
            }
        }

        return result;
    }
}
