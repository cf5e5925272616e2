using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Data;

namespace UsageBilling.Web.Endpoints;

/// <summary>The JSON API under <c>/api</c>: the caller's usage and subscription, and the billable assistant.</summary>
internal static class UsageApi
{
    /// <summary>A message to the assistant.</summary>
    /// <param name="Message">The text.</param>
    /// <param name="RequestId">The client's id for this request; a retry with the same id records once. Defaults to the <c>Idempotency-Key</c> header.</param>
    public sealed record AssistantRequest(string? Message, string? RequestId);

    /// <summary>The assistant's answer.</summary>
    /// <param name="Reply">The answer.</param>
    public sealed record AssistantResponse(string Reply);

    /// <summary>One subscription item as the API shows it.</summary>
    public sealed record SubscriptionItemDto(string Id, string SubscriptionId, string PriceId, string? Meter, string Status, DateTimeOffset CurrentPeriodStart, DateTimeOffset CurrentPeriodEnd);

    /// <summary>The account's plan and items.</summary>
    public sealed record SubscriptionDto(Guid UserId, string? StripeCustomerId, string? PlanId, IReadOnlyList<SubscriptionItemDto> Items);

    public static void MapUsageApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").RequireAuthorization();
        api.MapGet("/usage", (ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct) =>
            GetUsageAsync(CurrentUser.RequiredId(user), user, summaries, ct));
        api.MapGet("/users/{userId:guid}/usage", (Guid userId, ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct) =>
            GetUsageAsync(userId, user, summaries, ct));
        api.MapGet("/users/{userId:guid}/subscription", GetSubscriptionAsync);
        api.MapPost("/assistant/messages", SendAsync);
        api.MapGet("/limits/{meter}", GetLimitsAsync);
        api.MapPut("/limits/{meter}", PutLimitsAsync);
        api.MapGet("/alerts", GetAlertsAsync);
        api.MapGet("/spend-cap", async (ClaimsPrincipal user, IUsageLimits limits, CancellationToken ct) =>
            TypedResults.Ok(await limits.GetAccountSpendCapAsync(CurrentUser.RequiredId(user), ct)));
        api.MapPut("/spend-cap", PutSpendCapAsync);
    }

    /// <summary>The caller's spend cap across all meters.</summary>
    /// <param name="SpendCap">The most the account's usage may cost per period, or <see langword="null"/> for none.</param>
    public sealed record SpendCapRequest(decimal? SpendCap);

    private static async Task<Results<Ok<AccountSpendCapSettings>, ValidationProblem>> PutSpendCapAsync(SpendCapRequest request, ClaimsPrincipal user, IUsageLimits limits, CancellationToken ct)
    {
        var userId = CurrentUser.RequiredId(user);
        try
        {
            await limits.SetAccountSpendCapAsync(userId, request.SpendCap, ct);
            return TypedResults.Ok(await limits.GetAccountSpendCapAsync(userId, ct));
        }
        catch (InvalidSpendCapException ex)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["spendCap"] = [ex.Message] });
        }
    }

    /// <summary>The caller's own caps and alert thresholds for a meter.</summary>
    /// <param name="SpendCap">The most the meter may cost per period, or <see langword="null"/> for none.</param>
    /// <param name="AlertThresholds">Threshold keys such as <c>percent_of_included:80</c> or <c>amount:25</c>; <see langword="null"/> restores the defaults.</param>
    public sealed record LimitSettingsRequest(decimal? SpendCap, IReadOnlyList<string>? AlertThresholds);

    private static async Task<Results<Ok<AccountLimitSettings>, ValidationProblem>> GetLimitsAsync(string meter, ClaimsPrincipal user, IUsageLimits limits, CancellationToken ct)
    {
        try
        {
            return TypedResults.Ok(await limits.GetSettingsAsync(CurrentUser.RequiredId(user), meter, ct));
        }
        catch (UnknownMeterException ex)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["meter"] = [ex.Message] });
        }
    }

    private static async Task<Results<Ok<AccountLimitSettings>, ValidationProblem>> PutLimitsAsync(string meter, LimitSettingsRequest request, ClaimsPrincipal user, IUsageLimits limits, CancellationToken ct)
    {
        var userId = CurrentUser.RequiredId(user);
        List<AlertThreshold>? thresholds = null;
        if (request.AlertThresholds is { } keys)
        {
            thresholds = [];
            foreach (var key in keys)
            {
                if (!AlertThreshold.TryParse(key, out var t))
                {
                    return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["alertThresholds"] = [$"'{key}' is not a threshold; write kind:value with kind percent_of_included, percent_of_limit, quantity or amount and a value above zero."] });
                }

                thresholds.Add(t);
            }
        }

        try
        {
            var current = await limits.GetSettingsAsync(userId, meter, ct);
            await limits.SetCapsAsync(userId, meter, request.SpendCap, current.QuantityCap, ct);
            await limits.SetAlertThresholdsAsync(userId, meter, thresholds, ct);
            return TypedResults.Ok(await limits.GetSettingsAsync(userId, meter, ct));
        }
        catch (UnknownMeterException ex)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["meter"] = [ex.Message] });
        }
        catch (InvalidSpendCapException ex)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["spendCap"] = [ex.Message] });
        }
        catch (ArgumentException ex)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["alertThresholds"] = [ex.Message] });
        }
    }

    private static async Task<Ok<IReadOnlyList<UsageAlert>>> GetAlertsAsync(ClaimsPrincipal user, IUsageLimits limits, CancellationToken ct) =>
        TypedResults.Ok(await limits.GetRecentAlertsAsync(CurrentUser.RequiredId(user), ct));

    /// <summary>Another account's id answers 404, exactly like an id that does not exist.</summary>
    private static async Task<Results<Ok<UsageSummary>, NotFound>> GetUsageAsync(Guid userId, ClaimsPrincipal user, IUsageSummaryService summaries, CancellationToken ct)
    {
        if (CurrentUser.Id(user) != userId)
        {
            return TypedResults.NotFound();
        }

        return TypedResults.Ok(await summaries.GetCurrentPeriodAsync(userId, ct));
    }

    private static async Task<Results<Ok<SubscriptionDto>, NotFound>> GetSubscriptionAsync(Guid userId, ClaimsPrincipal user, AppDbContext db, CancellationToken ct)
    {
        if (CurrentUser.Id(user) != userId)
        {
            return TypedResults.NotFound();
        }

        var customer = await db.BillingCustomers.AsNoTracking().FirstOrDefaultAsync(c => c.UserId == userId, ct);
        var items = await db.SubscriptionItems.AsNoTracking().Where(i => i.UserId == userId)
            .Select(i => new SubscriptionItemDto(i.Id, i.SubscriptionId, i.PriceId, i.Meter, i.Status, i.CurrentPeriodStart, i.CurrentPeriodEnd))
            .ToListAsync(ct);
        return TypedResults.Ok(new SubscriptionDto(userId, customer?.StripeCustomerId, customer?.PlanId, items));
    }

    private static async Task<Results<Ok<AssistantResponse>, ValidationProblem, ProblemHttpResult>> SendAsync(
        AssistantRequest request, HttpContext http, ClaimsPrincipal user, AssistantService assistant, TimeProvider time, CancellationToken ct)
    {
        var requestId = request.RequestId ?? http.Request.Headers["Idempotency-Key"].ToString();
        if (string.IsNullOrWhiteSpace(requestId))
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["requestId"] = ["A requestId (or an Idempotency-Key header) is required so that a retry records once."] });
        }

        var outcome = await assistant.SendAsync(CurrentUser.RequiredId(user), request.Message, requestId, ct);
        if (outcome.Limit is { } limit)
        {
            // Retry-After: the limit resets with the period, which is what the client should wait for.
            http.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling((limit.PeriodEnd - time.GetUtcNow()).TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            return TypedResults.Problem(
                statusCode: StatusCodes.Status429TooManyRequests,
                title: "Usage limit reached",
                detail: outcome.Error,
                type: "https://usagebilling.dev/problems/usage-limit",
                extensions: new Dictionary<string, object?>
                {
                    ["meter"] = limit.Meter,
                    ["limitKind"] = limit.Kind.ToString(),
                    ["limit"] = limit.Limit,
                    ["used"] = limit.Used,
                    ["unit"] = limit.IsMonetary ? "currency" : "units",
                    ["resetsAt"] = limit.PeriodEnd,
                });
        }

        if (outcome.Conflict)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Idempotency key reused", detail: outcome.Error, type: "https://usagebilling.dev/problems/idempotency-conflict");
        }

        if (outcome.Error is { } error)
        {
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["message"] = [error] });
        }

        return TypedResults.Ok(new AssistantResponse(outcome.Reply!));
    }
}
