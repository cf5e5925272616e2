using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Options;

namespace UsageBilling.Web.Hosting;

/// <summary>Rate limits, cookie revocation, security headers and error bodies that leak nothing.</summary>
internal static class SecurityExtensions
{
    private const string LoginEmailItem = "ub:login-email";

    /// <summary>Registers the rate limiter, security-stamp validation on every request and the exception handler.</summary>
    public static void AddSecurity(this WebApplicationBuilder builder)
    {
        builder.WebHost.ConfigureKestrel(o => o.AddServerHeader = false);
        builder.Services.AddOptions<SecurityOptions>().Bind(builder.Configuration.GetSection(SecurityOptions.SectionName)).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<SecurityOptions>, SecurityOptionsValidator>();

        // Sign-out and a password change update the security stamp; checking it on every request makes an
        // old cookie worthless at once (one indexed read per request).
        builder.Services.Configure<SecurityStampValidatorOptions>(o => o.ValidationInterval = TimeSpan.Zero);

        // Minimal APIs throw on bad input in every environment, so the exception handler answers it as
        // ProblemDetails naming the field, never with the developer page (stack trace, headers, cookies).
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
        builder.Services.AddHsts(o => o.MaxAge = TimeSpan.FromDays(365));

        builder.Services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.OnRejected = async (context, ct) =>
            {
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : TimeSpan.FromMinutes(1);
                context.HttpContext.Response.Headers.RetryAfter = Math.Ceiling(retryAfter.TotalSeconds).ToString(CultureInfo.InvariantCulture);
                await Results.Problem(
                        statusCode: StatusCodes.Status429TooManyRequests,
                        title: "Too many requests",
                        detail: $"Try again in {Math.Ceiling(retryAfter.TotalSeconds).ToString(CultureInfo.InvariantCulture)} seconds.")
                    .ExecuteAsync(context.HttpContext);
            };

            // Per client and per account: a burst from one address is slowed, and so are attempts on one
            // account from many addresses, long before Identity's lockout (20 failures) could be reached.
            o.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                PartitionedRateLimiter.Create<HttpContext, string>(context => Kind(context) switch
                {
                    Limited.SignIn => Window("sign-in-client:" + Client(context), Options(context).SignInPerClient),
                    Limited.SignUp => Window("sign-up-client:" + Client(context), Options(context).SignUpPerClient),
                    Limited.Billable => Window("billable:" + (context.User.FindFirstValue(ClaimTypes.NameIdentifier) ?? Client(context)), Options(context).BillablePerAccount),
                    _ => RateLimitPartition.GetNoLimiter(""),
                }),
                PartitionedRateLimiter.Create<HttpContext, string>(context => Kind(context) == Limited.SignIn
                    ? Window("sign-in-account:" + ((context.Items[LoginEmailItem] as string) ?? ""), Options(context).SignInPerAccount, TimeSpan.FromMinutes(5))
                    : RateLimitPartition.GetNoLimiter("")));
        });
    }

    /// <summary>Headers, HSTS, the exception handler, the 404 page and the rate limiter, in pipeline order.</summary>
    public static void UseSecurity(this WebApplication app)
    {
        app.UseExceptionHandler(new ExceptionHandlerOptions { ExceptionHandlingPath = "/error", CreateScopeForErrors = true });
        if (!app.Environment.IsDevelopment())
        {
            app.UseHsts();
        }

        app.Use(async (context, next) =>
        {
            var headers = context.Response.Headers;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers["Referrer-Policy"] = "strict-origin-when-cross-origin";
            headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";
            headers["Cross-Origin-Opener-Policy"] = "same-origin";

            // The sign-in limiter is per account too: it needs the e-mail before the form is handled.
            if (HttpMethods.IsPost(context.Request.Method) && context.Request.Path.Equals("/account/login", StringComparison.OrdinalIgnoreCase) && context.Request.HasFormContentType)
            {
                var form = await context.Request.ReadFormAsync(context.RequestAborted);
                context.Items[LoginEmailItem] = form["Input.Email"].ToString().Trim().ToUpperInvariant();
            }

            await next(context);
        });

        // Browsers get the app's page for an error status without a body (a 404 above all); API callers a
        // ProblemDetails body instead.
        app.UseStatusCodePagesWithReExecute("/not-found", createScopeForStatusCodePages: true);
        app.Use(async (context, next) =>
        {
            if (!context.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
            {
                await next(context);
                return;
            }

            if (context.Features.Get<IStatusCodePagesFeature>() is { } pages)
            {
                pages.Enabled = false;
            }

            await next(context);
            var response = context.Response;
            if (response.StatusCode >= 400 && !response.HasStarted && response.ContentLength is null && string.IsNullOrEmpty(response.ContentType))
            {
                await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext { HttpContext = context });
            }
        });
    }

    private static string Client(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "unknown";

    private static SecurityOptions Options(HttpContext context) => context.RequestServices.GetRequiredService<IOptions<SecurityOptions>>().Value;

    private static RateLimitPartition<string> Window(string key, int permits, TimeSpan? window = null) =>
        RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions { PermitLimit = permits, Window = window ?? TimeSpan.FromMinutes(1), QueueLimit = 0 });

    private static Limited Kind(HttpContext context)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            return Limited.None;
        }

        var path = context.Request.Path;
        return path.Equals("/account/login", StringComparison.OrdinalIgnoreCase) ? Limited.SignIn
            : path.Equals("/account/register", StringComparison.OrdinalIgnoreCase) ? Limited.SignUp
            : path.Equals("/api/assistant/messages", StringComparison.OrdinalIgnoreCase) ? Limited.Billable
            : Limited.None;
    }

    private enum Limited
    {
        None,
        SignIn,
        SignUp,
        Billable,
    }

    /// <summary>Bad input is a 400 naming what is wrong; anything else a bare 500. Neither carries exception details.</summary>
    private sealed class ProblemExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
    {
        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            var bad = exception as BadHttpRequestException;
            httpContext.Response.StatusCode = bad?.StatusCode ?? StatusCodes.Status500InternalServerError;
            var detail = bad is null ? "The error was logged." : Describe(bad);
            if (!httpContext.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase) && bad is null)
            {
                return false; // A page: the middleware shows /error.
            }

            return await problems.TryWriteAsync(new ProblemDetailsContext
            {
                HttpContext = httpContext,
                Exception = null,
                ProblemDetails = { Status = httpContext.Response.StatusCode, Title = bad is null ? "Something went wrong" : "Bad request", Detail = detail },
            });
        }

        /// <summary>The binding failure's message names the parameter; a JSON error adds where in the body.</summary>
        private static string Describe(BadHttpRequestException bad) =>
            bad.InnerException is System.Text.Json.JsonException json
                ? $"{bad.Message} The JSON is invalid at {json.Path ?? "$"}{(json.LineNumber is { } line ? $" (line {line + 1})" : "")}."
                : bad.Message;
    }
}

/// <summary>Rate limits and cookie policy of the sample, bound from <c>Security</c>.</summary>
internal sealed class SecurityOptions
{
    public const string SectionName = "Security";

    /// <summary>Sign-in attempts per client address per minute. Default 20.</summary>
    public int SignInPerClient { get; set; } = 20;

    /// <summary>Sign-in attempts per account (e-mail) per 5 minutes, from anywhere. Default 5: Identity's lockout (20 failures) takes 20 minutes of guessing to reach.</summary>
    public int SignInPerAccount { get; set; } = 5;

    /// <summary>Sign-ups per client address per minute. Default 10.</summary>
    public int SignUpPerClient { get; set; } = 10;

    /// <summary>Billable API calls per account per minute. Default 120.</summary>
    public int BillablePerAccount { get; set; } = 120;

    /// <summary>Whether the auth cookie is sent over HTTPS only. Default <see langword="true"/>; <see langword="false"/> in Development (plain HTTP on 127.0.0.1).</summary>
    public bool HttpsOnlyCookies { get; set; } = true;
}

/// <summary>Every limit must allow at least one request.</summary>
internal sealed class SecurityOptionsValidator : IValidateOptions<SecurityOptions>
{
    public ValidateOptionsResult Validate(string? name, SecurityOptions options)
    {
        var bad = new[] { ("SignInPerClient", options.SignInPerClient), ("SignInPerAccount", options.SignInPerAccount), ("SignUpPerClient", options.SignUpPerClient), ("BillablePerAccount", options.BillablePerAccount) }
            .Where(x => x.Item2 is < 1 or > 1_000_000).Select(x => $"Security:{x.Item1} must be between 1 and 1000000.").ToList();
        return bad.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(bad);
    }
}
