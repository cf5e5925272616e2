using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Billing;

/// <summary>The result of one assistant message.</summary>
/// <param name="Reply">The assistant's answer, when the message was accepted.</param>
/// <param name="Error">Why the message was refused (nothing was recorded).</param>
/// <param name="Limit">The limit that refused it, when a limit did (429 over HTTP).</param>
/// <param name="Conflict">Whether the request id was already used for another message (409 over HTTP).</param>
internal sealed record AssistantOutcome(string? Reply, string? Error, UsageLimitExceededException? Limit = null, bool Conflict = false)
{
    /// <summary>Whether a limit of the period refused the message.</summary>
    public bool LimitReached => Limit is not null;
}

/// <summary>
/// The billable demo feature: every message is recorded as usage <em>before</em> the assistant answers.
/// The library enforces the plan's limits, the account's caps and the no-plan policy inside the
/// recording transaction, so this holds across any number of app instances on one database.
/// </summary>
internal sealed class AssistantService(IUsageRecorder recorder, IOptions<AppOptions> options)
{
    public const int MaxMessageLength = 2000;

    public string Meter => options.Value.AssistantMeter;

    /// <summary>
    /// Records one message for <paramref name="userId"/> with <paramref name="requestId"/> as the
    /// idempotency key, bound to the message's SHA-256 (a double-submitted form records once and gets
    /// the same answer; the same id with another message is a conflict), then answers. Over a limit
    /// nothing is recorded and the message is refused with the limit's figures.
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

        try
        {
            await recorder.RecordRequestAsync(userId, Meter, 1, $"assistant:{requestId}", Fingerprint(message), cancellationToken: ct);
        }
        catch (UsageLimitExceededException limit)
        {
            return new(null, Explain(limit), limit);
        }
        catch (IdempotencyConflictException)
        {
            return new(null, "This request id was already used for another message; send it with a new id (reload the page).", Conflict: true);
        }

        // The answer is a function of the message, so a replay of the same request gets the first reply.
        return new(Answer(message), null);
    }

    /// <summary>What the customer reads when a limit refuses a message: which limit, and until when.</summary>
    public static string Explain(UsageLimitExceededException limit)
    {
        var until = limit.PeriodEnd.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture);
        return limit.Kind switch
        {
            UsageLimitKind.NoPlan => "The assistant needs a plan: choose one on the Plans page to start.",
            UsageLimitKind.NoPlanAllowance => $"You have used the {limit.Limit:N0} free messages of this month (until {until}). Choose a plan to continue.",
            UsageLimitKind.CustomerSpendCap => $"You have reached the spend cap you set ({limit.Limit:0.00}) for this period, until {until}. Raise it on the Usage page to continue.",
            UsageLimitKind.AccountSpendCap => $"You have reached the spend cap you set for your whole account ({limit.Limit:0.00}) for this period, until {until}. Raise it to continue.",
            UsageLimitKind.CustomerQuantityCap => $"You have reached the cap of {limit.Limit:N0} messages you set for this period, until {until}.",
            UsageLimitKind.SpendLimit => $"You have reached your plan's spend limit of {limit.Limit:0.00} for this period, until {until}. Upgrade your plan to continue.",
            _ => $"You have used all {limit.Limit:N0} messages your plan allows this period (until {until}). Upgrade your plan to continue.",
        };
    }

    /// <summary>The request's content digest the idempotency key is bound to.</summary>
    public static string Fingerprint(string message) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(message)));

    /// <summary>A deterministic local "model": the same question always gets the same answer.</summary>
    public static string Answer(string message)
    {
        var words = message.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var longest = words.OrderByDescending(w => w.Length).ThenBy(w => w, StringComparer.Ordinal).FirstOrDefault() ?? "";
        return $"You wrote {words.Length} word{(words.Length == 1 ? "" : "s")}; the longest is \"{longest}\". " +
            (message.EndsWith('?') ? "Good question — the answer is 42." : "Tell me more, or ask a question.");
    }
}
