using Microsoft.Extensions.Options;
using UsageBilling.Recording;
using UsageBilling.Summaries;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Billing;

/// <summary>The result of one assistant message.</summary>
/// <param name="Reply">The assistant's answer, when the message was accepted.</param>
/// <param name="Error">Why the message was refused (nothing was recorded).</param>
/// <param name="LimitReached">Whether the refusal is the plan's hard limit.</param>
internal sealed record AssistantOutcome(string? Reply, string? Error, bool LimitReached = false);

/// <summary>The billable demo feature: every message is recorded as usage <em>before</em> the assistant answers.</summary>
internal sealed class AssistantService(IUsageRecorder recorder, IUsageSummaryService summaries, IOptions<AppOptions> options)
{
    public const int MaxMessageLength = 2000;

    /// <summary>
    /// Striped per-user locks: the limit check and the record happen as one step per user in this
    /// process, so a burst of requests cannot overshoot the hard limit. (Several app instances would
    /// need the check in the database; see the report.)
    /// </summary>
    private static readonly SemaphoreSlim[] UserLocks = [.. Enumerable.Range(0, 64).Select(_ => new SemaphoreSlim(1, 1))];

    public string Meter => options.Value.AssistantMeter;

    /// <summary>
    /// Records one message for <paramref name="userId"/> with <paramref name="requestId"/> as the
    /// idempotency key (a double-submitted form records once), then answers. Over the plan's hard
    /// limit nothing is recorded and the message is refused.
    /// </summary>
    public async Task<AssistantOutcome> SendAsync(Guid userId, string? message, string? requestId, CancellationToken ct)
    {
        message = message?.Trim();
        if (string.IsNullOrEmpty(message))
        {
            return new(null, "Type a message first.");
        }

        if (message.Length > MaxMessageLength)
        {
            return new(null, $"Messages are limited to {MaxMessageLength} characters.");
        }

        if (string.IsNullOrWhiteSpace(requestId) || requestId.Length > 100)
        {
            return new(null, "The form expired; reload the page and send again.");
        }

        var gate = UserLocks[(userId.GetHashCode() & int.MaxValue) % UserLocks.Length];
        await gate.WaitAsync(ct);
        try
        {
            var summary = await summaries.GetCurrentPeriodAsync(userId, ct);
            var usage = summary.Meters.FirstOrDefault(m => m.Meter == Meter);
            if (usage is { HardLimit: { } limit } && usage.Used + 1 > limit)
            {
                return new(null, $"You have used all {limit:N0} {usage.Unit ?? "units"} your plan allows this period (until {usage.PeriodEnd:yyyy-MM-dd}). Upgrade your plan to continue.", LimitReached: true);
            }

            await recorder.RecordAsync(userId, Meter, 1, idempotencyKey: $"assistant:{requestId}", cancellationToken: ct);
        }
        catch (IdempotencyConflictException)
        {
            return new(null, "This request was already used for something else; reload the page.");
        }
        finally
        {
            gate.Release();
        }

        return new(Answer(message), null);
    }

    /// <summary>A deterministic local "model": the same question always gets the same answer.</summary>
    public static string Answer(string message)
    {
        var words = message.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var longest = words.OrderByDescending(w => w.Length).ThenBy(w => w, StringComparer.Ordinal).FirstOrDefault() ?? "";
        return $"You wrote {words.Length} word{(words.Length == 1 ? "" : "s")}; the longest is \"{longest}\". " +
            (message.EndsWith('?') ? "Good question — the answer is 42." : "Tell me more, or ask a question.");
    }
}
